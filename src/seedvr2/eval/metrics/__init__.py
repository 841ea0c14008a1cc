"""Image and video quality metrics of the evaluation protocol (spec ``training.md`` §4).

Frames are float RGB tensors ``(c, h, w)`` or ``(f, c, h, w)`` in [0, 1]; every metric returns the
mean of its per-frame values. Full reference: PSNR, SSIM (BasicSR conventions), LPIPS, DISTS.
No reference: NIQE, CLIP-IQA and MUSIQ (through optional pyiqa), flow-warping error.
"""

from .artifacts import grid_ratio, speck_fraction
from .external import pyiqa_metric
from .fidelity import psnr, ssim
from .niqe import niqe
from .perceptual import DISTS, LPIPS, dists, load_dists, load_lpips, lpips, perceptual_distance
from .registry import METRICS, Metric, get_metric
from .temporal import warping_error

__all__ = [
    "DISTS",
    "LPIPS",
    "METRICS",
    "Metric",
    "dists",
    "get_metric",
    "grid_ratio",
    "load_dists",
    "load_lpips",
    "lpips",
    "niqe",
    "perceptual_distance",
    "psnr",
    "pyiqa_metric",
    "speck_fraction",
    "ssim",
    "warping_error",
]
