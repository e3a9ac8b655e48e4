"""Torn and corrupt files in a runs folder: `engine status`, compare and the app keep
working and show the damaged run with the reason; resume refuses with one line; nothing
else is lost (docs/reliability.md)."""
import hashlib
import shutil

from conftest import engine

from engine.core import rundir as rd


def digest(folder):
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def damaged_copies(trained):
    """Four copies of a finished run, each torn in one way; the original untouched."""
    runs = trained.parent / "runs"
    good = rd.latest_done(runs, "scratch").path
    copies = {}
    for name in ("status", "metrics", "config", "checkpoint"):
        d = good.parent / f"20990101-00000{len(copies)}-{name[:4]}"
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(good, d)
        copies[name] = d
    status = copies["status"] / rd.STATUS
    status.write_bytes(status.read_bytes()[: len(status.read_bytes()) // 2])
    with open(copies["metrics"] / rd.METRICS, "ab") as f:
        f.write(b"garbage \xff\xfe not json\n{\"kind\": \"epoch\", \"epo")
    (copies["config"] / rd.CONFIG).write_text("")
    ckpt = copies["checkpoint"] / rd.CHECKPOINTS / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    rd.update_status(copies["checkpoint"], state="cancelled")
    return runs, good, copies


def test_torn_files_are_shown_and_refused_one_line(trained):
    runs, good, copies = damaged_copies(trained)
    before = digest(good)
    out = engine("status", "--config", trained, check=True).stdout
    assert "damaged: scratch/" + copies["status"].name + ": status.json is unreadable" in out
    assert "damaged: scratch/" + copies["config"].name + ": config.toml is empty" in out
    assert copies["metrics"].name in out  # garbage lines are skipped, the run still listed
    assert engine("compare", "summary", "--config", trained).returncode == 0
    for name in ("status", "config", "checkpoint"):
        proc = engine("resume", copies[name], "--config", trained, "--now")
        err = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode in (1, 2) and len(err) == 1 and "Traceback" not in proc.stderr, \
            (name, proc.stderr)
    assert "damaged" in engine("resume", copies["status"], "--config", trained).stderr
    epochs = [m for m in rd.read_jsonl(copies["metrics"] / rd.METRICS) if m["kind"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]  # the good lines, each once
    assert digest(good) == before  # nothing else touched
    for d in copies.values():
        shutil.rmtree(d)


async def test_the_app_shows_a_damaged_run(trained):
    from tui.app import RotundaApp

    runs, good, copies = damaged_copies(trained)
    try:
        app = RotundaApp(trained, gpu=False, poll_s=0.2)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("2")
            await pilot.pause(1.0)
            row = next(r for r in app.snapshot.rows if r.run_id == copies["status"].name)
            assert row.state == "damaged"
            table = app.query_one("#runs-table")
            assert "damaged" in str(table.get_row(row.key)[0])
    finally:
        for d in copies.values():
            shutil.rmtree(d)


def test_a_tampered_config_toml_is_validated_before_a_resume(trained, tmp_path):
    """A run's config.toml is checked like experiments.toml: a wrong type, an unknown key
    or a value that would be code in a shell is one line naming the file, and runs
    nothing."""
    runs = trained.parent / "runs"
    good = rd.latest_done(runs, "scratch").path
    marker = tmp_path / "pwned"
    cases = {"lr": f'lr = "__import__(\'os\').system(\'touch {marker}\')"',
             "unknown": "evil = 1",
             "model": f'model = "$(touch {marker})"'}
    for i, (name, line) in enumerate(cases.items()):
        d = good.parent / f"20990102-00000{i}-{name[:4]}"
        shutil.copytree(good, d)
        rd.update_status(d, state="cancelled")
        config = d / rd.CONFIG
        text = config.read_text().replace("[settings]\n", f"[settings]\n{line}\n", 1)
        if name == "lr":
            text = "\n".join(x for x in text.splitlines() if not x.startswith("lr = ")
                             or x == line)
        if name == "model":
            text = "\n".join(x for x in text.splitlines() if not x.startswith("model = ")
                             or x == line)
        config.write_text(text)
        proc = engine("resume", d, "--config", trained, "--now")
        err = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode in (1, 2) and len(err) == 1, (name, proc.stderr)
        assert "config.toml" in err[0] and "Traceback" not in proc.stderr, (name, err)
        assert rd.load_run(d).state == "cancelled"  # refused before anything ran
        shutil.rmtree(d)
    assert not marker.exists()
