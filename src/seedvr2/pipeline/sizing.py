"""Output size, resizing and padding of the restoration input.

The official preprocessing resizes to a target area and centre-crops to multiples of 16, cutting
pixels away. We keep every pixel: the input is resized to exactly the requested output size, padded
(replicating the edge) to multiples of 16 for the networks, and the result is cropped back.

Dimension key: ``f`` frames, ``c`` channels, ``h w`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seedvr2.errors import InputError
from seedvr2.models.dit.config import ConditionResize

MULTIPLE = 16  # VAE 8x spatial x DiT 2x2 patch


@dataclass(frozen=True)
class SizePlan:
    """Sizes of one input: source, requested output, and padded network size."""

    source: tuple[int, int]  # (h, w) of the input frames
    output: tuple[int, int]  # (h, w) written to the output
    padded: tuple[int, int]  # (h, w) the networks see, multiples of 16

    @property
    def pad(self) -> tuple[int, int]:
        """Rows and columns added at the bottom and right."""
        return self.padded[0] - self.output[0], self.padded[1] - self.output[1]


def plan_size(
    source: tuple[int, int],
    resolution: int | None = None,
    scale: float | None = None,
    max_side: int | None = None,
) -> SizePlan:
    """Output size from a short-side ``resolution`` or a ``scale`` factor, aspect ratio kept.

    Sizes are rounded to whole pixels (odd sizes stay possible); ``max_side`` caps the long side.
    Exactly one of ``resolution`` and ``scale`` is given; neither keeps the source size.
    """
    h, w = source
    if h <= 0 or w <= 0:
        raise InputError(f"input frames have no pixels: {h}x{w}")
    if resolution is not None and scale is not None:
        raise InputError("give either --resolution or --scale, not both")
    if resolution is not None:
        if resolution < MULTIPLE:
            raise InputError(f"--resolution {resolution} is below the minimum {MULTIPLE}")
        factor = resolution / min(h, w)
    elif scale is not None:
        if scale <= 0:
            raise InputError(f"--scale must be positive, got {scale}")
        factor = scale
    else:
        factor = 1.0
    if max_side is not None and max(h, w) * factor > max_side:
        factor = max_side / max(h, w)
    out_h, out_w = max(1, round(h * factor)), max(1, round(w * factor))
    padded = (-(-out_h // MULTIPLE) * MULTIPLE, -(-out_w // MULTIPLE) * MULTIPLE)
    return SizePlan(source=(h, w), output=(out_h, out_w), padded=padded)


def upscale_lq(
    frames: torch.Tensor,  # (f, c, h, w) in [0, 1]
    size: tuple[int, int],  # (H, W)
    method: ConditionResize = "bicubic_antialias",
) -> torch.Tensor:  # (f, c, H, W) float32 in [0, 1]
    """The LQ resized to ``size`` as a model's condition expects (``DiTConfig.condition_resize``),
    clamped to [0, 1] as the official preprocessing."""
    return F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False,
                         antialias=method == "bicubic_antialias").clamp_(0, 1)


def resize_and_pad(
    frames: torch.Tensor, plan: SizePlan, method: ConditionResize = "bicubic_antialias"
) -> torch.Tensor:
    """(f, c, h, w) in [0, 1] -> resized to the output size by ``method``, edge padding.

    Returns (f, c, H, W) at ``plan.padded``.
    """
    if tuple(frames.shape[-2:]) != plan.output:
        frames = upscale_lq(frames, plan.output, method)
    pad_h, pad_w = plan.pad
    if pad_h or pad_w:
        frames = F.pad(frames, (0, pad_w, 0, pad_h), mode="replicate")
    return frames


def crop_output(frames: torch.Tensor, plan: SizePlan) -> torch.Tensor:
    """Remove the padding: (..., H, W) -> (..., h, w) of the requested output."""
    return frames[..., : plan.output[0], : plan.output[1]]
