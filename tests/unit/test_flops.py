"""`engine flops` and `engine timing`: multiply-adds against torchvision's published
figures, the per-layer attribution, PALEO's arithmetic, and a real timing pass on CPU.
No time figure is asserted: only that times were measured and the model's bookkeeping
holds."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from engine.cli import main
from engine.measure.flops import count, layer_table, peak_rows
from engine.measure.timing import run_timing
from engine.perf import paleo

ROOT = Path(__file__).resolve().parents[2]

# The repo's model name -> torchvision's builder, whose weights' metadata carries the
# published multiply-adds at 224x224 ("_ops", in GFLOPS as torchvision counts them: MACs).
ORACLES = {"vgg19": "vgg19", "vgg16": "vgg16", "alexnet": "alexnet",
           "resnet50": "resnet50", "googlenet": "googlenet"}


def flops_json(capsys, tmp_path, *args):
    assert main(["flops", *args, "--json", "--out", str(tmp_path)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ORACLES)
def test_engine_flops_matches_torchvisions_published_ops(name, capsys, tmp_path):
    published = torchvision.models.get_model_weights(ORACLES[name]).DEFAULT.meta["_ops"]
    got = flops_json(capsys, tmp_path, name)["models"][0]
    assert got["size"] == 224 and got["batch"] == 1
    assert got["gmacs_forward_per_image"] == pytest.approx(published, rel=0.005)
    # the Markdown and CSV of every table were written
    assert (tmp_path / f"flops-{name}-224.md").exists()
    assert (tmp_path / f"flops-{name}-224.csv").exists()


def test_the_published_figures_are_the_ones_the_brief_quotes():
    """The oracles above are torchvision's metadata, not constants typed here; this only
    checks they are the figures the mission names (VGG19 19.632 ... GoogLeNet 1.498)."""
    ops = {n: torchvision.models.get_model_weights(n).DEFAULT.meta["_ops"] for n in ORACLES}
    assert ops == {"vgg19": 19.632, "vgg16": 15.47, "alexnet": 0.714, "resnet50": 4.089,
                   "googlenet": 1.498}


def test_vgg19_convolution_share_and_layers_add_up():
    r = count("vgg19")
    convs = [x for x in r.layers if x.type == "Conv2d"]
    linears = [x for x in r.layers if x.type == "Linear"]
    assert len(convs) == 16 and len(linears) == 3
    # every multiply-add is in a leaf module, and only convolutions and linears have any
    assert r.outside_fwd == 0 and r.outside_bwd == 0
    assert sum(x.flops_fwd for x in r.layers) == r.flops_fwd
    assert sum(x.flops_fwd for x in convs + linears) == r.flops_fwd
    # the share of convolutions, from the operators and from the layer rows, agree
    by_rows = sum(x.flops_fwd for x in convs) / r.flops_fwd
    assert r.conv_share == pytest.approx(by_rows, rel=1e-12)
    assert 0.99 < r.conv_share < 0.999  # Lu et al.: about 99% for VGG16
    table = layer_table(r)
    assert f"{100 * r.conv_share:.2f}% of the forward MACs" in table.notes[0]


def test_per_layer_shapes_bytes_params_and_backward():
    r = count("vgg19", batch=2)
    by = {x.name: x for x in r.layers}
    first, second = by["features.0"], by["features.2"]
    assert first.shape == "64x224x224" and by["classifier.6"].shape == "1000"
    assert first.out_bytes == 2 * 64 * 224 * 224 * 4  # float32, whole batch
    assert first.in_bytes == 2 * 3 * 224 * 224 * 4
    assert first.macs_fwd == 2 * 64 * 3 * 3 * 3 * 224 * 224  # Cout*Cin*k*k*H*W per image
    # backward: the first convolution computes only its weight gradient, later ones also
    # their input's gradient: twice the forward
    assert first.flops_bwd == first.flops_fwd
    assert second.flops_bwd == 2 * second.flops_fwd
    with torch.device("meta"):
        reference = torchvision.models.vgg19()
    assert r.params == sum(p.numel() for p in reference.parameters())
    assert first.params == 64 * 3 * 9 + 64 and first.weight_bytes == 4 * first.params


def test_a_module_run_several_times_is_one_row():
    r = count("lenet", size=32)
    act = next(x for x in r.layers if x.name == "act")
    assert act.calls == 4 and act.shape.endswith("(x4)")
    assert [x.name for x in r.layers][:3] == ["conv1", "act", "pool"]  # order of first run


def test_resnet_counts_residual_work_as_zero_and_nothing_outside():
    r = count("resnet18_cifar", size=32, classes=10)
    assert r.outside_fwd == 0
    assert {x.type for x in r.layers} >= {"Conv2d", "BatchNorm2d", "ReLU", "Linear"}


def test_paleo_arithmetic():
    layer = paleo.Layer("l", "Conv2d", "1", 1, 10, flops_fwd=2e9, flops_bwd=4e9,
                        in_bytes=1e6, out_bytes=2e6, weight_bytes=3e6)
    peak, bw = 1e12, 1e9
    # read inputs and weights, compute, write outputs
    assert paleo.forward_time(layer, peak, bw) == pytest.approx(4e-3 + 2e-3 + 2e-3)
    # read the output grad twice (dX and dW kernels), inputs, weights; write input and
    # weight grads
    assert paleo.backward_time(layer, peak, bw) == pytest.approx(8e-3 + 4e-3 + 4e-3)
    assert paleo.forward_time(layer, peak, bw, ppp=0.5) == pytest.approx(16e-3)
    assert paleo.fit_ppp(8e-3, 32e-3) == 0.25 and paleo.fit_ppp(1.0, 0.0) is None


def test_device_table_and_names():
    for d in paleo.DEVICES.values():
        assert d.fp32 > 1e12 and d.bandwidth > 1e11 and d.source
        assert d.tensor16 is None or d.tensor16 > d.fp32
    assert paleo.match_device("NVIDIA H100 80GB HBM3").name == "H100"
    assert paleo.match_device("NVIDIA H200").name == "H200"
    assert paleo.match_device("Tesla K80").name == "K80"
    assert paleo.match_device("Tesla V100-SXM2-16GB").name == "V100"
    assert paleo.match_device("NVIDIA H100 PCIe") is None  # another board, other figures


def test_seed_question_4_on_k80(capsys, tmp_path):
    """Time per image and peak images/s of VGG16, GoogLeNet and ResNet50 at the K80's
    published fp32 peak: FLOPs (2 x MACs) / peak."""
    out = flops_json(capsys, tmp_path, "vgg16", "googlenet", "resnet50", "--gpu", "k80")
    macs = {m["model"]: m["macs_forward"] for m in out["models"]}
    rows = {r["model"]: r for r in out["peaks"]}
    assert set(rows) == {"vgg16", "googlenet", "resnet50"}
    k80 = paleo.DEVICES["K80"]
    for name, row in rows.items():
        assert row["gpu"] == "K80"
        assert row["compute_s_per_image"] == pytest.approx(2 * macs[name] / k80.fp32)
        # PALEO adds the memory traffic: never faster than compute alone
        assert row["paleo_s_per_image"] > row["compute_s_per_image"]
    assert (rows["vgg16"]["compute_s_per_image"] > rows["resnet50"]["compute_s_per_image"]
            > rows["googlenet"]["compute_s_per_image"])
    assert (tmp_path / "flops-peaks-vgg16-googlenet-resnet50-224.csv").exists()


def test_peak_rows_cover_every_device():
    rows = peak_rows([count("alexnet")], list(paleo.DEVICES.values()))
    assert [r["gpu"] for r in rows] == list(paleo.DEVICES)


@pytest.mark.parametrize("argv", [
    ["flops", "nosuch"], ["flops", "lenet", "--size", "8"], ["flops", "alexnet", "--size", "16"],
    ["flops", "lenet", "--batch", "0"], ["timing", "vgg_19"], ["timing", "lenet", "--size", "4"],
])
def test_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_timing_on_cuda_without_one_is_exit_2(capsys):
    assert main(["timing", "lenet", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_timing_on_cpu_measures_every_layer_and_fits_ppp():
    r = run_timing("resnet18_cifar", 8, 2, 10, "cpu", steps=1, warmup=0)
    convs = [t for t in r.layers if t.layer.type == "Conv2d"]
    assert len(convs) == 20
    # the autograd-node hooks time every convolution's backward, residual in-place adds
    # and in-place ReLUs notwithstanding
    assert all(t.fwd > 0 and t.bwd > 0 for t in convs)
    assert r.whole_fwd > 0 and r.whole_bwd > 0
    assert r.figures["matmul_flops"] > 0 and r.figures["copy_bytes_per_s"] > 0
    assert 0 < r.ppp_fwd and 0 < r.ppp_bwd
    # PALEO at the fitted PPP sums to the measured whole pass; the layers its count
    # leaves out (BatchNorm, ReLU) have no prediction
    assert sum(t.pred_fwd or 0.0 for t in r.layers) == pytest.approx(r.whole_fwd)
    assert sum(t.pred_bwd or 0.0 for t in r.layers) == pytest.approx(r.whole_bwd)
    assert all(t.pred_fwd is None for t in r.layers if t.layer.type == "BatchNorm2d")
    # the max-pool of resnet18_cifar is an Identity: its output is the ReLU's output,
    # whose autograd node (and backward time) belongs to the ReLU
    ident = next(t for t in r.layers if t.layer.name == "maxpool")
    assert ident.layer.type == "Identity" and ident.bwd is None
    assert next(t for t in r.layers if t.layer.name == "relu").bwd > 0


def test_timing_command_json(capsys, tmp_path):
    assert main(["timing", "lenet", "--device", "cpu", "--batch", "2", "--steps", "1",
                 "--warmup", "0", "--json", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == 32  # the model's own input size by default
    names = [x["name"] for x in out["layers"]]
    assert names == ["conv1", "act", "pool", "conv2", "fc1", "fc2", "fc"]
    assert all(x["forward_s"] > 0 for x in out["layers"])
    assert out["sum_of_layers_forward_s"] > 0 and out["ppp_forward"] > 0
    assert (tmp_path / "timing-lenet-32.md").exists()


def test_the_time_model_and_device_table_import_no_torch():
    """engine/paleo.py is plain data and arithmetic, readable without torch."""
    code = "import sys, engine.perf.paleo; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
