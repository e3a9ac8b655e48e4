"""Real training runs on the synthetic dataset, driven through the CLI as a user would."""
import csv
import signal
import subprocess
import sys

import pytest
import tomllib
import torch
from conftest import engine, env, wait_until

from engine import launch
from engine.core import rundir as rd


def _runs(cfg, exp):
    return rd.list_runs(cfg.parent / "runs", exp)


def _epoch_lines(run_dir):
    return [m for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "epoch"]


def test_demo_chain_learns_both_tasks_above_chance(trained):
    rot, ft, scratch = (_runs(trained, e)[0] for e in ("rot", "ft", "scratch"))
    assert rot.summary["test_acc_at_best"] > 0.35  # chance: 0.25
    assert ft.summary["test_acc_at_best"] > 0.2  # chance: 0.10
    assert scratch.summary["test_acc_at_best"] > 0.2


def test_run_directory_holds_the_whole_contract(trained):
    rot, ft = _runs(trained, "rot")[0], _runs(trained, "ft")[0]
    status = rd.read_json(ft.path / rd.STATUS)
    assert status["state"] == "done" and status["ended"] and status["error"] is None
    resolved = tomllib.loads((ft.path / rd.CONFIG).read_text())
    assert resolved["run"]["init_from"] == str(rot.path / "checkpoints" / "best.pt")
    assert resolved["settings"]["epochs"] == 4 and resolved["settings"]["init"] == "rot"
    epochs = _epoch_lines(ft.path)
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s",
                "gpu_mem_peak_mb", "epoch_s"):
        assert key in epochs[0]
    assert epochs[0]["gpu_mem_peak_mb"] is None  # CPU
    steps = [m for m in rd.read_jsonl(ft.path / rd.METRICS) if m["kind"] == "step"]
    assert steps and all(s["step"] % 2 == 0 for s in steps)
    best = min(epochs, key=lambda m: m["test_loss"])
    s = ft.summary
    assert s["best_epoch"] == best["epoch"] and s["test_acc_at_best"] == best["test_acc"]
    assert s["final_test_acc"] == epochs[-1]["test_acc"]
    assert s["params_trainable"] == s["params_total"] == 11_181_642
    with open(ft.path / rd.PREDICTIONS) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "label"] and len(rows) == 161
    assert {int(r[1]) for r in rows[1:]} <= set(range(10))
    with open(rot.path / rd.PREDICTIONS) as f:
        assert len(f.readlines()) == 1 + 4 * 160  # every test image in four rotations
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(ft.path / "checkpoints" / name, weights_only=True)
        assert "fc.weight" in ckpt["model"]
    assert "init: weights from" in (ft.path / rd.LOG).read_text()


def test_dependency_without_a_run_says_how_to_get_one(tiny_config):
    proc = engine("run", "ft", "--config", tiny_config)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: ft starts from rot's best checkpoint, but rot has no successful run in "
        f"{tiny_config.parent / 'runs'}: run it first (python -m engine run rot) or add "
        "--with-deps"]


def _start(tiny_config, *sets):
    args = [sys.executable, "-m", "engine", "run", "scratch", "--config", str(tiny_config)]
    for s in sets:
        args += ["--set", s]
    return subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)




def test_sigkill_then_resume_records_every_epoch_once(tiny_config):
    proc = _start(tiny_config, "epochs=5", "log_every=1")
    wait_until(lambda: _runs(tiny_config, "scratch")
               and len(_epoch_lines(_runs(tiny_config, "scratch")[0].path)) >= 2,
               "two epoch records")
    run_dir = _runs(tiny_config, "scratch")[0].path
    wait_until(lambda: '"epoch":3' in (run_dir / rd.METRICS).read_text(),
               "a step record of epoch 3")  # mid-epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert launch.load_run(run_dir).state == "lost"
    done_before = len(_epoch_lines(run_dir))
    assert 2 <= done_before < 5
    res = engine("resume", run_dir, "--config", tiny_config, check=True)
    assert "done" in res.stdout
    assert [m["epoch"] for m in _epoch_lines(run_dir)] == [1, 2, 3, 4, 5]
    steps = [m["step"] for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 50
    assert rd.load_run(run_dir).state == "done"
    assert f"resume: from epoch {done_before} checkpoint" in (run_dir / rd.LOG).read_text()


def test_sigterm_cancels_after_the_checkpoint(tiny_config):
    proc = _start(tiny_config, "epochs=50")
    wait_until(lambda: _runs(tiny_config, "scratch")
               and _epoch_lines(_runs(tiny_config, "scratch")[0].path), "an epoch record")
    run_dir = _runs(tiny_config, "scratch")[0].path
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    status = rd.read_json(run_dir / rd.STATUS)
    assert status["state"] == "cancelled" and status["ended"]
    assert "cancelled" in err
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] >= 1
    done = len(_epoch_lines(run_dir))
    assert f"checkpoints/last.pt holds epoch {done}" in (run_dir / rd.LOG).read_text()


def test_sigterm_in_the_first_epoch_says_there_is_no_checkpoint(tiny_config):
    proc = _start(tiny_config, "epochs=50", "log_every=1")

    def stepped():
        runs = _runs(tiny_config, "scratch")
        metrics = runs[0].path / rd.METRICS if runs else None
        return bool(metrics and metrics.exists() and '"kind":"step"' in metrics.read_text())
    wait_until(stepped, "a step record")
    run_dir = _runs(tiny_config, "scratch")[0].path
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    log = (run_dir / rd.LOG).read_text()
    assert "cancelled by signal 15 in epoch 1; no checkpoint yet" in log
    assert "holds epoch 0" not in log


def test_nan_loss_ends_as_diverged(tiny_config):
    proc = engine("run", "scratch", "--set", "optimizer='sgd'", "--set", "lr=1e30",
                  "--set", "log_every=1", "--config", tiny_config)
    assert proc.returncode == 1
    run = _runs(tiny_config, "scratch")[0]
    assert run.state == "diverged"
    assert "loss became nan" in run.status["error"] or "loss became inf" in run.status["error"]
    assert "Traceback" not in proc.stderr


def test_missing_dataset_fails_with_where_it_looked(tiny_config, tmp_path):
    proc = engine("run", "scratch", "--set", "dataset=cifar10", "--set", "download=false",
                  "--set", f"data_dir='{tmp_path / 'nowhere'}'", "--config", tiny_config)
    assert proc.returncode == 1
    assert "CIFAR-10 not found in" in proc.stderr and "Traceback" not in proc.stderr
    assert _runs(tiny_config, "scratch")[0].state == "failed"


def test_runs_and_compare_show_the_same_images_per_s(trained):
    """The runs table (from status.json) and the comparisons (from summary.json) report
    one figure for a run's speed: the median over its epochs."""
    from engine.core.config import load
    from engine.report.compare import compare_table
    from engine.report.overview import runs_table

    runs = trained.parent / "runs"
    ft = rd.latest_done(runs, "ft")
    row = next(r for r in runs_table(rd.list_runs(runs)).rows if r[2] == ft.run_id)
    side = compare_table(load(trained), "side", runs)
    col = [name for name, _ in side.columns].index("img/s")
    compared = next(r for r in side.rows if r[0] == "ft")[col]
    assert row[6] == compared == ft.summary["median_images_per_s"]


def test_compare_status_and_export(trained):
    proc = engine("compare", "summary", "--format", "markdown", "--config", trained, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "### Tiny summary"
    row = next(line for line in lines if line.startswith("| rot "))
    rot = _runs(trained, "rot")[0].summary
    assert f"{100 * rot['test_acc_at_best']:.2f}%" in row and "50.00%" in row
    assert f"{100 * (rot['test_acc_at_best'] - 0.5):+.2f}" in row
    csv_out = engine("compare", "side", "--format", "csv", "--config", trained, check=True)
    header, *rows = list(csv.reader(csv_out.stdout.splitlines()))
    assert header[0] == "Experiment" and len(rows) == 2
    status = engine("status", "--config", trained, check=True).stdout
    assert status.count("done") == 3
    out = engine("export", "summary", "--config", trained, check=True).stdout.split()
    names = sorted(p.rsplit("/", 1)[1] for p in out)
    assert names == ["summary-curves.png", "summary.csv", "summary.md"]
    assert (trained.parent / "reports" / "summary-curves.png").read_bytes()[:4] == b"\x89PNG"
    listing = engine("list", "--config", trained, check=True).stdout
    assert "done" in listing and "rot" in listing


def test_a_checkpoint_file_relative_to_the_experiments_file_starts_a_run(trained):
    rot = rd.latest_done(trained.parent / "runs", "rot").path / "checkpoints" / "best.pt"
    (trained.parent / "weights").mkdir(exist_ok=True)
    (trained.parent / "weights" / "rot.pt").write_bytes(rot.read_bytes())
    proc = engine("run", "scratch", "--set", "epochs=1", "--set",
                  'init={ file = "weights/rot.pt" }', "--config", trained, check=True)
    run = rd.list_runs(trained.parent / "runs", "scratch")[0].path
    assert f"init: weights from {trained.parent / 'weights' / 'rot.pt'}" in \
        (run / rd.LOG).read_text()
    missing = engine("run", "scratch", "--set", 'init={ file = "weights/none.pt" }',
                     "--config", trained)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert proc.returncode == 0 and "Traceback" not in missing.stderr


def test_published_weights_missing_offline_say_where_in_one_line(tiny_config, tmp_path):
    """No weights in torch's cache and no network (a refused proxy): the run fails with
    one line naming the file, where to put it and the offline setting."""
    import subprocess
    import sys

    from conftest import env

    e = env()
    e.update(TORCH_HOME=str(tmp_path / "torch-home"), https_proxy="http://127.0.0.1:9",
             HTTPS_PROXY="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "scratch", "--set",
                           'init={ pretrained = "IMAGENET1K_V1" }', "--config", tiny_config],
                          env=e, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    run = rd.list_runs(tiny_config.parent / "runs", "scratch")[0]
    error = run.status["error"]
    assert run.state == "failed" and "\n" not in error
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in error
    assert "resnet18-f37072fd.pth" in error and "weights_file" in error


def test_device_cuda_without_a_gpu_fails_the_run_in_one_line(tiny_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = engine("run", "scratch", "--set", "device=cuda", "--config", tiny_config)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    run = rd.list_runs(tiny_config.parent / "runs", "scratch")[0]
    assert run.state == "failed"
    assert run.status["error"] == ('device = "cuda" but no CUDA device is available '
                                   '(use device = "auto" or "cpu")')


def test_ema_run_checkpoints_the_averaged_weights(tiny_config):
    from conftest import engine

    from engine.core import rundir as rd

    engine("run", "scratch", "--set", "epochs=1", "--set", "ema=0.9", "--set", "tta=true",
           "--config", tiny_config, check=True)
    run = rd.list_runs(tiny_config.parent / "runs", "scratch")[0].path
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert "ema" in last and "n_averaged" in last["ema"]
    assert torch.equal(best["fc.weight"], last["ema"]["module.fc.weight"])
    assert not torch.equal(best["fc.weight"], last["model"]["fc.weight"])
