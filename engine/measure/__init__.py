"""Measurements: bench, throughput, per-layer timing, FLOPs, the prediction gallery."""
