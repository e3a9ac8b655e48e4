"""python -m engine bench: a CPU smoke run of the real command."""
import json

import torch
from conftest import engine, write_lab


def test_bench_measures_three_paths_and_writes_table_and_json(tmp_path):
    path = write_lab(tmp_path)
    proc = engine("bench", "rot", "scratch", "--steps", "2", "--warmup", "1", "--workers", "1",
                  "--profile", "--config", path, check=True)
    assert "conventional" in proc.stdout and "/model" in proc.stdout
    reports = tmp_path / "reports"
    result = json.loads((reports / "bench.json").read_text())
    assert result["machine"]["torch"] == torch.__version__ and result["steps"] == 2
    assert set(result["experiments"]) == {"rot", "scratch"}
    rot = result["experiments"]["rot"]
    assert rot["images_per_step"] == 4 * 32  # all four rotations of a batch of 32
    rows = {r["mode"]: r for r in rot["rows"]}
    assert list(rows) == ["model", "engine", "data", "conventional"]
    for r in rows.values():
        # a step's images over its time: the two figures describe the same timed steps
        assert r["images_per_s"] > 0
        assert abs(r["images_per_s"] * r["step_ms"] / 1000 - 128) < 1e-6 * 128
    assert rows["conventional"]["note"].startswith("1 workers")
    # the table a user reads shows each path's rate against the model alone and against
    # the conventional pipeline; the data-only row has no ratio (it trains nothing)
    table = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")]
             for line in (reports / "bench.md").read_text().splitlines() if line.startswith("| rot ")}
    engine_row, data_row = table[("rot", "engine")], table[("rot", "engine data only")]
    rate = {m: rows[m]["images_per_s"] for m in rows}
    assert engine_row[6] == f"{rate['engine'] / rate['model']:.2f}"
    assert engine_row[7] == f"{rate['engine'] / rate['conventional']:.2f}"
    assert data_row[6] == data_row[7] == "-"
    assert "engine steps of rot" in (reports / "bench-profile-rot.txt").read_text()
    assert json.loads((reports / "bench-trace-rot.json").read_text())


def test_bench_unknown_experiment_is_one_line(tmp_path):
    path = write_lab(tmp_path)
    proc = engine("bench", "nosuch", "--config", path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nosuch" in proc.stderr
