"""The layers stay apart: the app never loads torch (it must start in well under a second
over SSH), the engine never loads the app's packages, and the engine's torch-free core
never loads torch. Checked statically by import-linter (every import, also inside
functions) and at run time in a fresh interpreter."""
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, env


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]'")
    proc = subprocess.run([exe], cwd=ROOT, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         cwd=ROOT, env=env(), capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_engine_never_imports_the_app_packages():
    mods = _loaded("import engine.cli, engine.train, engine.data, engine.models, engine.export")
    assert "torch" in mods
    assert not {"textual", "textual_plotext", "plotext", "tui"} & mods


def test_the_app_and_the_torch_free_core_never_import_torch():
    mods = _loaded("import tui.app, engine.config, engine.runner, engine.launch, "
                   "engine.analysis, engine.registry")
    assert "textual" in mods
    assert not {"torch", "torchvision"} & mods
