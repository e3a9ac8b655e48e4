"""The two halves stay apart: the engine never loads the app's packages, and the app never
loads torch (it must start in well under a second over SSH)."""
import subprocess
import sys

from conftest import ROOT, env


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         cwd=ROOT, env=env(), capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_engine_never_imports_the_app_packages():
    mods = _loaded("import engine.cli, engine.train, engine.data, engine.models, engine.export")
    assert "torch" in mods
    assert not {"textual", "textual_plotext", "plotext", "tui"} & mods


def test_the_app_never_imports_torch():
    mods = _loaded("import tui.app")
    assert "textual" in mods
    assert not {"torch", "torchvision"} & mods
