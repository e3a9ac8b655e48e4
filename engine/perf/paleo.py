"""PALEO's time model (Qi et al., "PALEO: A Performance Model for Deep Neural Networks",
ICLR 2017) and the published peaks of the NVIDIA GPUs it is asked about. No torch here:
the numbers come from engine/flops.py (counted) and engine/timing.py (measured).

A layer's time is PALEO's sum of its three phases, each at a platform percent of peak:

    T(layer) = (R + C + W) / PPP,  R = bytes read / bandwidth,  C = FLOPs / peak FLOP/s,
                                    W = bytes written / bandwidth

R reads the layer's inputs and weights, W writes its outputs (PALEO section 3.1; its
backward pass is two kernels, each reading the output gradient: see backward_time). PALEO's one efficiency knob, PPP, scales compute and memory
alike, so the model's whole-network time is ideal_time / PPP and the PPP that makes it
match a measured time is ideal / measured (fit_ppp). The sum is PALEO's choice; a
roofline would take max(R + W, C) per layer instead, which is never larger.

The default count is the paper's: convolution, fully connected and pooling layers only
(STRICT_TYPES), so that a fitted PPP can be set beside the paper's; "all_layers" also
charges BatchNorm, activations and the other elementwise layers. The model is of one
device: with several GPUs, PALEO adds a communication term that is not modelled here.
"""
from __future__ import annotations

from dataclasses import dataclass

TERA, GIGA = 1e12, 1e9


@dataclass(frozen=True)
class Device:
    name: str
    fp32: float  # peak FLOP/s in fp32 on the CUDA cores (no tensor cores, no TF32)
    tensor16: float | None  # peak FLOP/s in fp16/bf16 on tensor cores, dense; None: none
    bandwidth: float  # memory bytes/s
    memory: str
    source: str  # the datasheet the figures are from
    matches: tuple = ()  # substrings of torch.cuda.get_device_name() naming this board


# NVIDIA's datasheet figures (FLOP/s count a fused multiply-add as 2 FLOPs). Where a
# datasheet prints a tensor-core figure "with sparsity", the dense half is kept.
DEVICES = {d.name: d for d in (
    # Two GK210 GPUs on one board; the 8.74 TFLOP/s and 480 GB/s are the board's with GPU
    # Boost, so one CUDA device (one GK210) has half of each. No fp16 tensor cores.
    Device("K80", 8.74 * TERA, None, 480 * GIGA, "24 GB GDDR5 (2 x 12)",
           "NVIDIA Tesla K80 GPU Accelerator datasheet (2014) and board specification "
           "BD-07317-001_v05: nvidia.com/content/dam/en-zz/Solutions/Data-Center/"
           "tesla-product-literature/TeslaK80-datasheet.pdf", ("K80",)),
    # The PCIe card (16 GB) that clouds rent; the NVLink (SXM2) part has 10.6 / 21.2.
    Device("P100", 9.3 * TERA, 18.7 * TERA, 732 * GIGA, "16 GB HBM2",
           "NVIDIA Tesla P100 PCIe datasheet (2016): images.nvidia.com/content/tesla/pdf/"
           "nvidia-tesla-p100-PCIe-datasheet.pdf", ("P100",)),
    # The SXM2 (NVLink) part; the PCIe card has 14 / 112.
    Device("V100", 15.7 * TERA, 125 * TERA, 900 * GIGA, "16/32 GB HBM2",
           "NVIDIA Tesla V100 Tensor Core GPU datasheet (2018), SXM2 column: images.nvidia."
           "com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf",
           ("V100-SXM2",)),
    Device("T4", 8.1 * TERA, 65 * TERA, 320 * GIGA, "16 GB GDDR6",
           "NVIDIA T4 Tensor Core GPU datasheet (2019): nvidia.com/content/dam/en-zz/"
           "Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf", ("T4",)),
    # The 80 GB SXM4 part; the 40 GB one has 1,555 GB/s, the same FLOP/s.
    Device("A100", 19.5 * TERA, 312 * TERA, 2039 * GIGA, "80 GB HBM2e",
           "NVIDIA A100 Tensor Core GPU datasheet (2021), 80GB SXM column: nvidia.com/"
           "content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
           "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf", ("A100-SXM4-80GB",)),
    # SXM5; the datasheet's BF16 1,979 TFLOP/s is with sparsity.
    Device("H100", 67 * TERA, 989.5 * TERA, 3350 * GIGA, "80 GB HBM3",
           "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 SXM column: "
           "resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet",
           ("H100 80GB HBM3", "H100 SXM")),
    # SXM; the same GH100 compute as the H100 with more and faster memory.
    Device("H200", 67 * TERA, 989.5 * TERA, 4800 * GIGA, "141 GB HBM3e",
           "NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM column: "
           "nvidia.com/en-us/data-center/h200/", ("H200",)),
)}


def match_device(gpu_name: str) -> Device | None:
    """The table's entry for a CUDA device name (torch.cuda.get_device_name), if any."""
    for d in DEVICES.values():
        if any(m.upper() in gpu_name.upper() for m in d.matches):
            return d
    return None


@dataclass(frozen=True)
class Layer:
    """One leaf module's work for one pass of a batch, as engine/flops.py counts it."""
    name: str
    type: str
    shape: str  # its output's shape for one image (C x H x W), "(xN)" when called N times
    calls: int
    params: int
    flops_fwd: float  # FLOPs (2 per multiply-add), forward
    flops_bwd: float  # FLOPs of its backward (input and weight gradients)
    in_bytes: float  # its inputs
    out_bytes: float  # its outputs (the activations it writes)
    weight_bytes: float  # its parameters

    @property
    def macs_fwd(self) -> float:
        return self.flops_fwd / 2

    @property
    def macs_bwd(self) -> float:
        return self.flops_bwd / 2


def phase_time(flops: float, read: float, write: float, peak: float, bandwidth: float,
               ppp: float = 1.0) -> float:
    """PALEO: (read + compute + write) at `ppp` of the peak FLOP/s and bandwidth."""
    return (read / bandwidth + flops / peak + write / bandwidth) / ppp


def forward_time(layer: Layer, peak: float, bandwidth: float, ppp: float = 1.0) -> float:
    return phase_time(layer.flops_fwd, layer.in_bytes + layer.weight_bytes, layer.out_bytes,
                      peak, bandwidth, ppp)


def backward_time(layer: Layer, peak: float, bandwidth: float, ppp: float = 1.0,
                  first: bool = False) -> float:
    """PALEO's two backward kernels: dX reads the output gradient dY and the weights and
    writes dX; dW reads the inputs and dY and writes dW, so dY is read twice. A layer
    without weights has the dX kernel only (reading dY and its inputs); the network's
    first layer writes no dX (nothing upstream needs it)."""
    weighted = layer.weight_bytes > 0
    read = (2 if weighted else 1) * layer.out_bytes + layer.in_bytes + layer.weight_bytes
    write = (0.0 if first else layer.in_bytes) + layer.weight_bytes
    return phase_time(layer.flops_bwd, read, write, peak, bandwidth, ppp)


# The layers PALEO's paper counts (section 3.1: convolution, pooling, fully connected);
# BatchNorm, activations, additions and other elementwise layers are left out.
STRICT_TYPES = frozenset({
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "Linear", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "AdaptiveMaxPool3d"})
# "paleo": the paper's strict count, the default; "all_layers": every leaf module charged
# (what this lab reported before; 6-49% above the strict figure on the CIFAR models).
COUNTS = ("paleo", "all_layers")


def counted(layers: list, how: str = "paleo") -> list[tuple[bool, Layer]]:
    """(is the network's first layer, layer) for each layer the count `how` charges."""
    if how not in COUNTS:
        raise ValueError(f"count {how!r}: one of {', '.join(COUNTS)}")
    return [(i == 0, x) for i, x in enumerate(layers)
            if how == "all_layers" or x.type in STRICT_TYPES]


def network_time(layers: list, peak: float, bandwidth: float, how: str = "paleo",
                 ppp: float = 1.0) -> tuple[float, float]:
    """The whole network's forward and backward time: its layers' sum under count `how`.
    One device: PALEO's data-parallel communication term is not modelled (the engine
    trains a forecast's runs on one GPU each)."""
    kept = counted(layers, how)
    return (sum(forward_time(x, peak, bandwidth, ppp) for _, x in kept),
            sum(backward_time(x, peak, bandwidth, ppp, first) for first, x in kept))


def compute_time(flops: float, peak: float) -> float:
    """The seed's peak-FLOP/s estimate: compute alone at 100% of peak."""
    return flops / peak


def fit_ppp(ideal_s: float, measured_s: float) -> float | None:
    """The platform percent of peak (as a fraction) that makes PALEO's ideal time match
    the measured one: T = ideal / PPP."""
    return ideal_s / measured_s if measured_s > 0 else None
