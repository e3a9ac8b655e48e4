"""The layers stay apart: the engine's sub-packages import downwards only, the app and
the engine's torch-free half never load torch (the app must start in well under a second
over SSH), and the engine never loads the app's packages. Checked statically by
import-linter (every import, also inside functions), at run time in a fresh interpreter,
and by a lint rule: project imports sit at the top of the file, except in the CLI."""
import ast
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
    assert "ignore_imports" not in (ROOT / "pyproject.toml").read_text()


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         cwd=ROOT, env=env(), capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_engine_never_imports_the_app_packages():
    mods = _loaded("import engine.cli, engine.train.execute, engine.data.card, "
                   "engine.models.zoo, engine.measure.bench, engine.report.export")
    assert "torch" in mods
    assert not {"textual", "textual_plotext", "plotext", "tui"} & mods


def test_the_app_and_the_torch_free_core_never_import_torch():
    mods = _loaded("import tui.app, engine.core.config, engine.runs.execute, "
                   "engine.runs.detached, engine.launch.local, engine.launch.slurm, "
                   "engine.report.compare, engine.report.optimus, engine.live.watcher, "
                   "engine.perf.optimus, engine.perf.forecast")
    assert "textual" in mods
    assert not {"torch", "torchvision"} & mods


def _late_project_imports(path) -> list[str]:
    """`from engine ...`, `import tui ...` or a relative import inside a function or class."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names]
            if getattr(node, "level", 0) or any(n.split(".")[0] in ("engine", "tui")
                                                 for n in names):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def test_project_imports_sit_at_the_top_of_the_file_outside_the_cli():
    """Only the CLI (start-up speed) and __main__ import the project inside functions;
    a late import elsewhere hides an arrow that runs back up."""
    files = [p for d in ("engine", "tui") for p in (ROOT / d).rglob("*.py")
             if "cli" not in p.relative_to(ROOT).parts[:2] and p.name != "__main__.py"]
    assert len(files) > 60
    late = [hit for p in files for hit in _late_project_imports(p)]
    assert late == [], late
