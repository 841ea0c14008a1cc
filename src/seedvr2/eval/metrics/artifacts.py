"""Artefact measures of a restored frame: a token grid, and isolated one-pixel specks.

Frames are float RGB tensors ``(c, h, w)`` or ``(f, c, h, w)`` in [0, 1]; both measures average
over frames. They are diagnostics (no reference needed), read against the same measure of the
ground truth or of a bicubic up-scale, which have neither artefact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _frames(x: torch.Tensor) -> torch.Tensor:  # (f, c, h, w)
    return x[None] if x.ndim == 3 else x


def grid_ratio(frames: torch.Tensor, period: int, scale: int = 1) -> float:
    """Mean absolute step across the boundaries of a ``period``-pixel grid over the mean step
    across the other boundaries that sit alike on the ``scale``-pixel grid of an up-scaled input
    (rows and columns together). ~1: no grid; a model whose tokens of ``period`` pixels show
    scores well above 1.

    An up-scale by ``scale`` has a ``scale``-periodic texture of its own (the kernel's phases), so
    a step at ``period - 1`` is compared with steps of the same phase modulo ``gcd(period,
    scale)``; when ``period`` divides ``scale`` no such boundary exists and every other boundary
    is the reference (compare the score with bicubic's then).
    """
    x = _frames(frames).float().mean(dim=1)  # (f, h, w) luma-like
    steps = ((x[..., 1:] - x[..., :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs())
    phase = math.gcd(period, scale)
    grid, rest = [], []
    for axis, step in zip((-1, -2), steps):
        boundary = torch.arange(step.shape[axis])  # between pixel j and j + 1
        on = (boundary + 1) % period == 0
        alike = ((boundary + 1) % phase == 0) & ~on if phase < period else ~on
        grid.append(step.index_select(axis, boundary[on]).flatten())
        rest.append(step.index_select(axis, boundary[alike]).flatten())
    return float(torch.cat(grid).mean() / torch.cat(rest).mean().clamp_min(1e-12))


def speck_fraction(frames: torch.Tensor, threshold: float = 24 / 255) -> float:
    """Fraction of pixels that are a strict local extremum of their 3x3 neighbourhood in some
    channel *and* stand more than ``threshold`` above (or below) every neighbour: one-pixel
    bright or dark specks."""
    x = _frames(frames).float()
    f, c, h, w = x.shape
    padded = F.pad(x.reshape(f * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    neighbours = F.unfold(padded, 3).reshape(f * c, 9, h, w)
    others = torch.cat([neighbours[:, :4], neighbours[:, 5:]], dim=1)  # (fc, 8, h, w)
    centre = x.reshape(f * c, h, w)
    bright = centre - others.amax(dim=1) > threshold
    dark = others.amin(dim=1) - centre > threshold
    specks = (bright | dark).reshape(f, c, h, w).any(dim=1)
    return float(specks.float().mean())
