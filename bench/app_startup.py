"""How long `python -m tui` takes until its first screen holds the runs: a benchmark, never
a test assertion. Usage: python bench/app_startup.py [--config FILE] [--repeat N]"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import asyncio, sys, time
t0 = time.perf_counter()
from tui.app import RotundaApp
t_import = time.perf_counter() - t0
async def main():
    app = RotundaApp(sys.argv[1], gpu=False, poll_s=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.query_one("#exp-table").row_count:
            await pilot.pause(0.01)
        t_screen = time.perf_counter() - t0
    print(t_import, t_screen, "torch" in sys.modules)
asyncio.run(main())
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "experiments.toml"))
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    rows = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE, args.config], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        rows.append({"process_s": time.perf_counter() - t0, "import_s": float(out[0]),
                     "first_screen_s": float(out[1]), "torch_loaded": out[2] == "True"})
    result = {k: statistics.median(r[k] for r in rows) for k in ("process_s", "import_s",
                                                                  "first_screen_s")}
    result["torch_loaded"] = any(r["torch_loaded"] for r in rows)
    result["repeat"] = args.repeat
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
