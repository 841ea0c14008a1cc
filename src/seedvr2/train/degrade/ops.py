"""Pixel operations of the degradation model on clips ``(f, c, h, w)`` in [0, 1].

Blur, resize, noise and 8-bit quantisation, in torch so they run on any device. Random fields
come from the caller's generator on its own device and are moved to the clip's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

# ITU-R BT.601 luma weights (Real-ESRGAN's gray noise uses the same conversion)
LUMA = (0.299, 0.587, 0.114)


def blur(clip: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve frame ``i`` with ``kernels[i]`` (``(f, k, k)``), all channels alike.

    Borders are reflected (OpenCV's ``filter2D`` default used by Real-ESRGAN), or replicated when
    the frame is smaller than the kernel radius.
    """
    frames, channels, height, width = clip.shape
    pad = kernels.shape[-1] // 2
    mode = "reflect" if pad < min(height, width) else "replicate"
    padded = F.pad(rearrange(clip, "f c h w -> 1 (f c) h w"), (pad,) * 4, mode=mode)
    weight = repeat(kernels.to(clip), "f kh kw -> (f c) 1 kh kw", c=channels)
    out = F.conv2d(padded, weight, groups=frames * channels)
    return rearrange(out, "1 (f c) h w -> f c h w", f=frames)


def resize(clip: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Resize to ``(height, width)`` with area, bilinear or bicubic interpolation.

    No antialiasing on the bilinear/bicubic paths, as OpenCV's ``resize`` used by Real-ESRGAN;
    area averages on the way down.
    """
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    if interpolation == "area":
        return F.interpolate(clip, size=size, mode="area")
    return F.interpolate(clip, size=size, mode=interpolation, align_corners=False)


def even_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """``(h, w) · factor`` rounded down to even sizes (yuv420p codecs need them), at least 2."""
    return max(2, 2 * int(height * factor / 2)), max(2, 2 * int(width * factor / 2))


def quantize(clip: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels."""
    return torch.round(clip.clamp(0, 1) * 255) / 255


def _luma(clip: torch.Tensor) -> torch.Tensor:  # (f, 3, h, w) -> (f, 1, h, w)
    weights = clip.new_tensor(LUMA).view(1, 3, 1, 1)
    return (clip * weights).sum(dim=1, keepdim=True)


def add_gaussian_noise(
    clip: torch.Tensor,  # (f, c, h, w)
    sigma: torch.Tensor,  # (f,) standard deviation, in [0, 1] units
    gray: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """``x + σ_f n``, ``n ~ N(0, I)`` fresh per frame; ``gray``: one field for all channels."""
    frames, channels, height, width = clip.shape
    shape = (frames, 1 if gray else channels, height, width)
    noise = torch.randn(shape, generator=generator, device=generator.device).to(clip)
    return clip + sigma.to(clip).view(-1, 1, 1, 1) * noise


def add_poisson_noise(
    clip: torch.Tensor,  # (f, c, h, w)
    scale: torch.Tensor,  # (f,) noise multiplier
    gray: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Shot noise ``x + s_f (Poisson(256 x) / 256 - x)`` (Real-ESRGAN), fresh per frame.

    Real-ESRGAN uses ``2^⌈log2 n⌉`` levels for an image with ``n`` distinct 8-bit values, which is
    256 for any natural frame with more than 128 of them; the fixed 256 keeps the draw independent
    of content. ``gray``: the noise of the luma, shared by all channels.
    """
    levels = 256.0
    source = quantize(_luma(clip) if gray else clip)  # Real-ESRGAN: noise of the 8-bit image
    rates = (source * levels).to(device=generator.device, dtype=torch.float32)
    counts = torch.poisson(rates, generator=generator).to(clip)
    return clip + scale.to(clip).view(-1, 1, 1, 1) * (counts / levels - source)

