"""Sweeps, throughput, HDF5 submissions and the gallery, end to end through the CLI."""
import csv
import io
import json

from conftest import TINY, engine, write_lab
from makers import write_h5


def test_tiny_sweep_end_to_end_table_and_skips_done_points(tmp_path):
    path = write_lab(tmp_path, TINY + """
[sweep.aug]
title = "Tiny augmentation sweep"
base = "scratch"
axes = { augment = ["none", "crop_flip"] }
""")
    first = engine("sweep", "aug", "--set", "epochs=1", "--config", path, "--quiet", check=True)
    assert first.returncode == 0
    out = engine("compare", "aug", "--format", "csv", "--config", path, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["Point"] for r in rows] == ["augment=none", "augment=crop_flip"]
    assert all(0 < float(r["Acc@best"]) <= 1 and r["State"] == "done" for r in rows)
    runs = sorted((tmp_path / "runs" / "aug").iterdir())
    assert len(runs) == 2
    again = engine("sweep", "aug", "--set", "epochs=1", "--config", path, check=True).stdout
    assert again.count("already done") == 2
    assert len(list((tmp_path / "runs" / "aug").iterdir())) == 2
    exported = engine("export", "aug", "--config", path, check=True).stdout.split()
    assert any(p.endswith("aug-curves.png") for p in exported)


def test_throughput_cli_writes_table_plot_json(tmp_path):
    path = write_lab(tmp_path, TINY.replace('[experiment.scratch]',
                                            '[experiment.scratch]\nmodel = "lenet"'))
    engine("throughput", "scratch", "--max-batch", "8", "--steps", "2", "--warmup", "1",
           "--config", path, check=True)
    reports = tmp_path / "reports"
    result = json.loads((reports / "throughput-scratch.json").read_text())
    assert result["largest_batch"] == 8 and result["stopped"] == "reached the cap of 8"
    assert "largest batch that fits: 8" in (reports / "throughput-scratch.md").read_text()
    assert (reports / "throughput-scratch.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(reports / "throughput-scratch.csv")))
    assert [int(r["Batch"]) for r in rows] == [1, 2, 4, 8]


def test_hdf5_run_writes_submission_for_the_unlabelled_split(tmp_path):
    write_h5(tmp_path / "medium.hdf5")
    path = write_lab(tmp_path, TINY.replace('[experiment.scratch]', '[experiment.scratch]\n'
                                            'dataset = "hdf5"\ndata_dir = "medium.hdf5"\n'
                                            'batch_size = 16\nmodel = "lenet"'))
    engine("run", "scratch", "--set", "epochs=2", "--config", path, check=True)
    run = next((tmp_path / "runs" / "scratch").iterdir())
    rows = list(csv.reader(open(run / "submission.csv")))
    assert rows[0] == ["id", "label"] and len(rows) == 14
    assert [int(r[0]) for r in rows[1:]] == list(range(13))
    assert {int(r[1]) for r in rows[1:]} <= {0, 1, 2, 3}
    assert len(list(csv.reader(open(run / "predictions.csv")))) == 25  # the labelled val split
    bad = engine("run", "scratch", "--set", "data_dir='nothing.h5'", "--config", path)
    assert bad.returncode == 1 and "HDF5 file" in bad.stderr and "not found" in bad.stderr


def test_gallery_shows_true_and_predicted_labels(trained):
    run = next((trained.parent / "runs" / "ft").iterdir())
    out = engine("gallery", run, "--width", "100", "--config", trained, check=True).stdout
    assert "correct (bold: true label; below: predicted)" in out
    assert out.count("▀") >= 20 * 16 * 8
    right = int(out.split(" correct")[0].split()[-1].split("/")[0])
    assert 0 <= right <= 20 and "/20 correct" in out
    assert (run / "gallery.png").read_bytes()[:4] == b"\x89PNG"
