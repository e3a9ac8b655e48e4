"""`python -m engine flops` and `timing` as a person runs them: the tables on stdout, the
Markdown and CSV under --out (or reports/ beside the config), one line and exit 2 for a
bad model. No time figure is asserted."""
import csv

from conftest import engine


def test_flops_vgg19_prints_and_exports_the_layer_table(tmp_path):
    proc = engine("flops", "vgg19", "--out", tmp_path, check=True)
    assert "Multiply-adds per layer: vgg19 at 224x224" in proc.stdout
    assert "convolutions: 99." in proc.stdout  # the share, as the run computed it
    assert "K80" in proc.stdout and "H200" in proc.stdout  # the peaks table, every GPU
    rows = list(csv.DictReader((tmp_path / "flops-vgg19-224.csv").open()))
    total = rows[-1]
    assert total["Layer"] == "total"
    convs = sum(float(r["MACs"]) for r in rows if r["Type"] == "Conv2d")
    assert 0.99 < convs / float(total["MACs"]) < 0.999
    assert (tmp_path / "flops-vgg19-224.md").read_text().startswith("### Multiply-adds")


def test_flops_writes_reports_beside_the_config(tmp_path):
    engine("flops", "lenet", "--size", "32", "--summary", cwd=tmp_path, check=True)
    assert (tmp_path / "reports" / "flops-lenet-32.csv").exists()


def test_timing_on_cpu_prints_measured_and_predicted(tmp_path):
    proc = engine("timing", "cifarnet", "--batch", "2", "--steps", "1", "--warmup", "1",
                  "--device", "cpu", "--out", tmp_path, check=True)
    out = proc.stdout
    assert "Time per layer, measured and PALEO: cifarnet at 32x32, batch 2" in out
    assert "sum of layers" in out and "whole pass (no hooks)" in out
    assert "fitted PPP" in out and "GFLOP/s" in out
    assert (tmp_path / "timing-cifarnet-32.csv").exists()


def test_bad_model_is_one_line_exit_2(tmp_path):
    for args in (("flops", "vgg_19"), ("timing", "lenet", "--size", "4")):
        proc = engine(*args, "--out", tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
        assert "Traceback" not in proc.stderr
