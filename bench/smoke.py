"""The GPU smoke test (#28), run by `bash bench/gpu_session.sh smoke` on a lent device:
every CUDA-only line executed once, in under 3 minutes. Each step is a command; the
first failure stops it and prints the exact command to rerun. Writes smoke.json and
smoke.md (the table for docs/results.md) into --out.

    python3 bench/smoke.py --out $OUT --data /tmp/cifar10
    python3 bench/smoke.py --sync-debug-only --out /tmp/o --device cpu   # the CPU check

Needs neither textual nor kornia: the NVML reading imports engine.live.gpu alone, and the tasks
whose views need kornia or lightly are skipped with the reason when those are absent."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SYNC_TASKS = {  # task -> extra settings; 20 steps each on synthetic data
    "classify": ["ema=0.999"], "rotation": ['rotation_mode="random"'],
    "jigsaw": ["image_size=24", "knn_every=1"], "simclr": ["knn_every=1"],
    "moco": ["knn_every=1"], "byol": ["knn_every=1"], "dino": ["knn_every=1"]}
NEEDS = {"simclr": ("kornia", "lightly"), "moco": ("kornia", "lightly"),
         "byol": ("kornia", "lightly"), "dino": ("kornia", "lightly")}


READS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


class CountReads:
    """Every value read back from a tensor (each a host sync on a GPU), by the project
    or library line that asked: torch's sync debug mode sees only CUDA; this sees both."""

    def __init__(self):
        self.where: dict[str, int] = {}
        self._saved = []

    def __enter__(self):
        import traceback

        import torch
        for name in READS:
            original = getattr(torch.Tensor, name)
            self._saved.append((name, original))

            def counted(t, *a, _original=original, _name=name, **k):
                frame = traceback.extract_stack(limit=3)[0]
                key = f"{Path(frame.filename).name}:{frame.lineno} {_name}"
                self.where[key] = self.where.get(key, 0) + 1
                return _original(t, *a, **k)
            setattr(torch.Tensor, name, counted)
        return self

    def __exit__(self, *exc):
        import torch
        for name, original in self._saved:
            setattr(torch.Tensor, name, original)


def sync_debug(device: str, steps: int = 20) -> dict:
    """20 training steps of every task under torch.cuda.set_sync_debug_mode("warn"): each
    warning is a host sync inside the hot loop (prepare_batch, the step, after_step, EMA).
    On the CPU the same steps run without the mode (the check that the code path works)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from engine import tasks
    from engine.core.settings import Settings, apply_overrides
    from engine.data.datasets import load_dataset
    from engine.models.weights import normalizer
    from engine.train.optim import Ema
    from engine.train.step import (
        Stepper,
        autocast_for,
        decide,
        prepare_batch,
        trainable_model,
    )

    out = {}
    for task, extra in SYNC_TASKS.items():
        missing = [m for m in NEEDS.get(task, ()) if importlib.util.find_spec(m) is None]
        if missing:
            out[task] = {"skipped": f"{', '.join(missing)} not installed (carry .wheels)"}
            continue
        s = apply_overrides(Settings(), [
            'dataset="synthetic"', "synthetic_train=2048", "synthetic_test=64",
            f'device="{device}"', f'task="{task}"', "batch_size=64", *extra])
        dev = torch.device(device)
        data = load_dataset(s).place(dev, "device")
        t = tasks.build(s)
        eff = decide(s, dev)
        model, opt = trainable_model(s, t, len(data.classes), dev, None, eff.channels_last)
        ema = Ema(model, s.ema) if s.ema else None
        norm, _ = normalizer(s, data, dev, eff.channels_last)
        stepper = Stepper(model, t, eff.compiled, lambda line: None)
        autocast = autocast_for(dev, eff.bf16)
        gen = torch.Generator(device=dev).manual_seed(0)
        loss_sum = torch.zeros((), device=dev)
        batches = data.train.batches(s.batch_size, dev, drop_last=True, seed=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("warn")
            reads = CountReads()
            try:
                with reads:
                    for i, (xb, yb) in zip(range(steps), batches):
                        x, y = prepare_batch(xb, yb, s, t, gen)
                        loss, _, _ = stepper(opt, norm(x), y, autocast)
                        t.after_step(model, i, steps)
                        if ema is not None:
                            ema.update(model, i)
                        loss_sum += loss.detach()
            finally:
                if dev.type == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message).splitlines()[0] for w in caught
                 if "synchroniz" in str(w.message)]
        where = {}
        for w in caught:
            if "synchroniz" in str(w.message):
                key = f"{Path(w.filename).name}:{w.lineno}"
                where[key] = where.get(key, 0) + 1
        out[task] = {"steps": steps, "syncs": len(syncs), "where": where,
                     "reads_per_step": round(sum(reads.where.values()) / steps, 2),
                     "reads_where": reads.where,
                     "loss_finite": bool(torch.isfinite(loss_sum).item()),
                     "effective": eff.record(), "mode": "warn" if dev.type == "cuda"
                     else "none (CPU: the path only)"}
    return out


def _run(name: str, cmd: list[str], results: list, env=None, timeout=600) -> str:
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    row = {"step": name, "command": shlex.join(cmd), "seconds": round(time.time() - t0, 1),
           "ok": proc.returncode == 0, "tail": (proc.stdout + proc.stderr)[-1500:]}
    results.append(row)
    if proc.returncode != 0:
        raise SystemExit(f"smoke: {name} failed (exit {proc.returncode}); rerun:\n  "
                         f"{row['command']}\n{row['tail']}")
    return proc.stdout


def _latest_status(runs: Path, experiment: str) -> dict:
    run = sorted((runs / experiment).iterdir())[-1]
    return json.loads((run / "status.json").read_text())


def write(out: Path, results: list, extra: dict) -> None:
    (out / "smoke.json").write_text(json.dumps({"steps": results, **extra}, indent=2) + "\n")
    lines = ["| step | ok | s | what it recorded |", "| --- | --- | ---: | --- |"]
    for r in results:
        lines.append(f"| {r['step']} | {'yes' if r['ok'] else 'NO'} | {r['seconds']} | "
                     f"{r.get('note', '')} |")
    for task, r in (extra.get("sync_debug") or {}).items():
        note = r.get("skipped") or (f"{r['syncs']} syncs in {r['steps']} steps "
                                    f"({', '.join(f'{k} x{v}' for k, v in r['where'].items()) or 'none'})")
        lines.append(f"| sync debug: {task} | {'skipped' if 'skipped' in r else 'yes'} | | "
                     f"{note} |")
    (out / "smoke.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", default="/tmp/cifar10")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sync-debug-only", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results, extra = [], {}
    if a.sync_debug_only:
        extra["sync_debug"] = sync_debug(a.device)
        write(a.out, results, extra)
        print(json.dumps(extra, indent=2))
        return 0
    runs = Path("/tmp/smoke-runs")
    data = ["--set", f"data_dir={a.data}", "--set", f'device="{a.device}"',
            "--runs-dir", str(runs)]
    try:
        _run("part 1, 1 epoch, bf16 + channels_last + compile",
             [PY, "-m", "engine", "run", "part1", *data, "--set", "epochs=1",
              "--set", "amp=true", "--set", "channels_last=true", "--set", "compile=true",
              "--now", "--quiet"], results)
        st = _latest_status(runs, "part1")
        results[-1]["note"] = f"state {st['state']}, effective {st.get('effective')}"
        want = {"precision": "bf16", "memory_format": "channels_last", "compiled": True}
        if st["state"] != "done" or any(st["effective"][k] != v for k, v in want.items()):
            results[-1]["ok"] = False
            raise SystemExit(f"smoke: part 1 ran {st.get('effective')} ({st['state']}); "
                             f"rerun:\n  {results[-1]['command']}")
        import torch
        if a.device == "cuda" and torch.cuda.device_count() >= 2:
            _run("DDP, 2 processes, NCCL", [PY, "-m", "engine", "run", "part1", *data,
                                            "--set", "epochs=1", "--set", "gpus=2",
                                            "--set", "limit_train=8192", "--now", "--quiet"],
                 results)
            results[-1]["note"] = str(_latest_status(runs, "part1").get("processes"))
        else:
            results.append({"step": "DDP, 2 processes, NCCL", "ok": True, "seconds": 0,
                            "note": f"skipped: {torch.cuda.device_count()} GPU(s)"})
        nvml = _run("NVML reading (engine.live.gpu, the app's monitor)", [PY, "-c", (
            "import json; from engine.live.gpu import GpuMonitor; m = GpuMonitor(); "
            "print(json.dumps([g.__dict__ for g in m.read() or []] or m.error))")], results)
        results[-1]["note"] = nvml.strip()[-300:]
        tp = _run("throughput point (part1, batch up to 512)",
                  [PY, "-m", "engine", "throughput", "part1", "--set", f'device="{a.device}"',
                   "--max-batch", "512", "--steps", "5", "--out", str(a.out / "tp")], results)
        results[-1]["note"] = tp.strip().splitlines()[-1][:300] if tp.strip() else ""
        t0 = time.time()
        extra["sync_debug"] = sync_debug(a.device)
        results.append({"step": "20 steps of every task, sync debug warn", "ok": True,
                        "seconds": round(time.time() - t0, 1), "note": "rows below"})
    finally:
        write(a.out, results, extra)
    print((a.out / "smoke.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
