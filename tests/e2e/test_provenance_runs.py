"""Every run records where it came from; `rerun` repeats one exactly; `diff` shows what
differs. Real runs of the tiny synthetic config on CPU."""
import json
import subprocess

from conftest import TINY, engine, write_lab
from makers import write_run

from engine.core import provenance
from engine.core import rundir as rd

FAST = TINY.replace("epochs = 4", "epochs = 2")


def epochs(run_dir):
    return [(m["train_loss"], m["test_loss"], m["test_acc"], m["lr"])
            for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "epoch"]


def test_run_in_a_git_repo_rerun_and_diff(tmp_path):
    cfg = write_lab(tmp_path, FAST)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "experiments.toml"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, env=env)
    cfg.write_text(FAST + "\n# an uncommitted change\n")
    engine("run", "scratch", "--config", cfg, "--quiet", check=True)
    (first,) = rd.list_runs(tmp_path / "runs", "scratch")
    prov = json.loads((first.path / provenance.PROVENANCE).read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    assert prov["config_code"]["commit"] == head and prov["config_code"]["dirty"] is True
    assert "+# an uncommitted change" in (first.path / provenance.PATCH).read_text()
    assert prov["seed"] == 0 and prov["environment"]["torch"]
    assert prov["data"]["sizes"] == {"train": 320, "test": 160}
    assert prov["command"][-4:] == ["scratch", "--config", str(cfg), "--quiet"]

    out = engine("rerun", first.path, "--config", cfg, "--quiet", check=True)
    again = next(r for r in rd.list_runs(tmp_path / "runs", "scratch")
                 if r.run_id != first.run_id)
    assert epochs(again.path) == epochs(first.path)  # bitwise, on the CPU
    assert rd.read_config(again.path)["rerun_of"] == str(first.path)
    # same environment and data (the code check is the unit test's: this tree may be
    # edited while the suite runs)
    assert "environment differs" not in out.stderr and "data differs" not in out.stderr

    engine("run", "scratch", "--config", cfg, "--quiet", "--set", "lr=0.01", "--set",
           "seed=5", check=True)
    third = rd.list_runs(tmp_path / "runs", "scratch")[0]
    out = engine("diff", first.path, third.path, "--config", cfg, check=True).stdout
    lines = [line.split() for line in out.splitlines()]
    assert [w[1] for w in lines if w and w[0] == "settings"] == ["lr", "seed"]
    assert any(w[:2] == ["figures", "acc@best"] for w in lines)


def test_rerun_warns_when_the_data_differs(tmp_path):
    cfg = write_lab(tmp_path, FAST)
    engine("run", "scratch", "--config", cfg, "--quiet", check=True)
    (first,) = rd.list_runs(tmp_path / "runs", "scratch")
    prov = json.loads((first.path / provenance.PROVENANCE).read_text())
    assert prov["config_code"]["commit"] is None  # outside a repository: recorded, no failure
    prov["data"]["hash"] = "0" * 32  # as if the original had read another copy
    (first.path / provenance.PROVENANCE).write_text(json.dumps(prov))
    out = engine("rerun", first.path, "--config", cfg, "--quiet", check=True)
    assert f"warning: data differs: fingerprint {'0' * 32} then" in out.stderr


async def test_app_diffs_two_marked_runs(tmp_path):
    """Runs view: space marks two runs, d opens what differs between them."""
    from tui.app import RotundaApp
    from tui.screens import Pager

    cfg = write_lab(tmp_path, FAST)
    for run_id, lr in (("20260101-000000-aaaa", 0.002), ("20260101-000001-bbbb", 0.02)):
        write_run(tmp_path / "runs", "scratch", run_id,
                  status={"experiment": "scratch", "run_id": run_id, "epoch": 2, "epochs": 2},
                  config={"run": {"experiment": "scratch"}, "settings": {"lr": lr, "seed": 0}},
                  summary={"test_acc_at_best": lr * 10})
    app = RotundaApp(cfg, gpu=False, poll_s=0.2)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await pilot.pause(0.5)
        await pilot.press("d")  # nothing marked: a hint, no screen
        await pilot.pause(0.2)
        assert not isinstance(app.screen, Pager)
        await pilot.press("space", "down", "space", "d")
        await pilot.pause(0.5)
        assert isinstance(app.screen, Pager)
        from rich.console import Console

        console = Console(record=True, width=120)
        console.print(app.screen.content)  # the table on screen
        text = console.export_text()
        assert "lr" in text and "0.002" in text and "0.02" in text and "seed" not in text
        assert "-18.00 points" in text  # first marked (the newest, 20%) is A
        # the tables' labels, whole, in a dialog centred as the others are (#26)
        assert "acc@best" in text and "test_acc_at_best" not in text and "…" not in text
        box, screen = app.screen.query_one("#dialog").region, app.screen.region
        assert abs(box.x - (screen.width - box.right)) <= 1 and box.x > 0, (box, screen)
