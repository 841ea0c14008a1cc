"""The metrics by name, with what a benchmark table needs to know about each.

Calling convention: a metric that ``needs_reference`` is called ``fn(output, reference, **options)``,
the others ``fn(output, **options)``; both return the mean over frames as a float.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from seedvr2.errors import InputError

from .external import pyiqa_metric
from .fidelity import psnr, ssim
from .niqe import niqe
from .perceptual import dists, lpips
from .temporal import warping_error


@dataclass(frozen=True)
class Metric:
    """A metric function and how to read its value."""

    fn: Callable[..., float]
    higher_is_better: bool
    needs_reference: bool  # full-reference (paired benchmarks) or no-reference (real / AIGC clips)


METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        "psnr": Metric(psnr, higher_is_better=True, needs_reference=True),
        "psnr_y": Metric(
            partial(psnr, y_channel=True), higher_is_better=True, needs_reference=True
        ),
        "ssim": Metric(ssim, higher_is_better=True, needs_reference=True),
        "ssim_y": Metric(
            partial(ssim, y_channel=True), higher_is_better=True, needs_reference=True
        ),
        "lpips": Metric(lpips, higher_is_better=False, needs_reference=True),
        "dists": Metric(dists, higher_is_better=False, needs_reference=True),
        "niqe": Metric(niqe, higher_is_better=False, needs_reference=False),
        "warping_error": Metric(warping_error, higher_is_better=False, needs_reference=False),
        "clipiqa": Metric(
            partial(pyiqa_metric, "clipiqa"), higher_is_better=True, needs_reference=False
        ),
        "musiq": Metric(
            partial(pyiqa_metric, "musiq"), higher_is_better=True, needs_reference=False
        ),
    }
)


def get_metric(name: str) -> Metric:
    """The metric called ``name``.

    Raises:
        InputError: unknown name; the message lists the valid ones.
    """
    if name not in METRICS:
        raise InputError(f"unknown metric {name!r}; valid names: {', '.join(sorted(METRICS))}")
    return METRICS[name]
