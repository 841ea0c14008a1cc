"""Input checks and colour conversions shared by the metrics.

Every metric takes float RGB frames in [0, 1], either one image ``(c, h, w)`` or a clip
``(f, c, h, w)``; ``c`` is 3 (RGB) or 1 (grey). Scores are computed per frame and averaged over
frames, as the evaluation protocol asks (spec ``training.md`` §4).
"""

from __future__ import annotations

import torch

from seedvr2.errors import InputError

RANGE_TOLERANCE = 1e-3
"""How far outside [0, 1] values may stray (rounding of a decoder) before the input is refused."""

RGB2GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
"""MATLAB ``rgb2gray``: the first row of the inverse of the NTSC YIQ matrix."""


def as_clip(frames: torch.Tensor, name: str = "frames") -> torch.Tensor:
    """Check ``frames`` and return them as a clip ``(f, c, h, w)``.

    Raises:
        InputError: not a float tensor of 3 or 4 dimensions with 1 or 3 channels in [0, 1].
    """
    if not isinstance(frames, torch.Tensor) or not frames.is_floating_point():
        seen = frames.dtype if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"{name} must be a float tensor in [0, 1], got {seen}")
    if frames.ndim not in (3, 4):
        raise InputError(
            f"{name} must have shape (c, h, w) or (f, c, h, w), got {tuple(frames.shape)}"
        )
    clip = frames if frames.ndim == 4 else frames[None]
    if clip.shape[1] not in (1, 3) or clip.numel() == 0:
        raise InputError(
            f"{name} must have 1 or 3 channels on dimension -3 and at least one pixel, "
            f"got shape {tuple(frames.shape)}"
        )
    low, high = float(clip.min()), float(clip.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise InputError(
            f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "divide 8-bit data by 255 and clamp model outputs first"
        )
    return clip


def as_clip_pair(
    a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two clips of the same shape (an output and its reference)."""
    clip_a, clip_b = as_clip(a, names[0]), as_clip(b, names[1])
    if clip_a.shape != clip_b.shape:
        raise InputError(
            f"{names[0]} and {names[1]} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return clip_a, clip_b


def crop_frames(clip: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels on each side of ``(f, c, h, w)`` frames (BasicSR ``crop_border``)."""
    height, width = clip.shape[-2:]
    if border < 0 or 2 * border >= min(height, width):
        raise InputError(
            f"crop_border must be in [0, {(min(height, width) - 1) // 2}] for "
            f"{height}x{width} frames, got {border}"
        )
    return clip[..., border : height - border, border : width - border] if border else clip


def rgb_to_ycbcr_y(clip: torch.Tensor) -> torch.Tensor:
    """Luma of ITU-R BT.601 YCbCr on the [0, 255] scale (MATLAB ``rgb2ycbcr``, BasicSR ``to_y_channel``).

    Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1], so Y lies in [16, 235].

    Args:
        clip: RGB frames ``(f, 3, h, w)`` in [0, 1].

    Returns:
        ``(f, 1, h, w)``.
    """
    weights = clip.new_tensor([65.481, 128.553, 24.966])
    return torch.einsum("fchw,c->fhw", clip, weights)[:, None] + 16.0


def rgb_to_gray(clip: torch.Tensor) -> torch.Tensor:
    """Luminance on the [0, 255] scale with MATLAB ``rgb2gray``'s weights (the Y of NTSC YIQ).

    Y = 0.298936 R + 0.587043 G + 0.114021 B (pyiqa's ``yiq`` rounds these to 0.299, 0.587,
    0.114); grey frames ``(f, 1, h, w)`` are only rescaled.

    Returns:
        ``(f, 1, h, w)``.
    """
    if clip.shape[1] == 1:
        return clip * 255.0
    weights = clip.new_tensor(RGB2GRAY_WEIGHTS) * 255.0
    return torch.einsum("fchw,c->fhw", clip, weights)[:, None]


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 for the closed-form metrics, float32 where the device has no float64 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64
