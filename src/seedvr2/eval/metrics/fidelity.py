"""Full-reference fidelity metrics: PSNR and SSIM, with BasicSR's conventions.

Both follow ``basicsr.metrics.calculate_psnr`` / ``calculate_ssim``: values on the [0, 255]
scale, optional border crop, optional evaluation on the BT.601 luma Y (MATLAB ``rgb2ycbcr``).
pyiqa's ``psnr`` (RGB) is the same; pyiqa's ``ssim`` instead compares the MATLAB ``rgb2gray``
luma rounded to integers, which scores lower than the YCbCr Y (0.699 vs 0.735 on pyiqa's
calibration pair I03). Frames are not quantised to 8 bits first; quantise them yourself to
reproduce scores of saved PNGs. A clip scores the mean of its per-frame values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from seedvr2.errors import InputError

from .frames import as_clip_pair, compute_dtype, crop_frames, rgb_to_ycbcr_y

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PIXEL_MAX = 255.0


def _frame_pairs(
    a: torch.Tensor, b: torch.Tensor, border: int, y_channel: bool, min_size: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Frame pairs ``(1, c, h, w)`` on the [0, 255] scale, cropped, as Y or RGB, in float64.

    One frame at a time keeps float64 copies of long HD clips out of memory.
    """
    clip_a, clip_b = as_clip_pair(a, b)
    if y_channel and clip_a.shape[1] != 3:
        raise InputError(f"y_channel=True needs RGB frames, got {clip_a.shape[1]} channel(s)")
    clip_a, clip_b = crop_frames(clip_a, border), crop_frames(clip_b, border)
    height, width = clip_a.shape[-2:]
    if min(height, width) < min_size:
        raise InputError(
            f"frames must be at least {min_size}x{min_size} after cropping, got {height}x{width}"
        )
    dtype = compute_dtype(clip_a.device)
    for frame_a, frame_b in zip(clip_a, clip_b):
        x, y = frame_a[None].to(dtype), frame_b[None].to(dtype)
        yield (
            (rgb_to_ycbcr_y(x), rgb_to_ycbcr_y(y)) if y_channel else (x * PIXEL_MAX, y * PIXEL_MAX)
        )


def _psnr_frame(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = float((x - y).square().mean())
    return 10 * math.log10(PIXEL_MAX**2 / mse) if mse > 0 else math.inf


def psnr(a: torch.Tensor, b: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(255² / MSE), mean over frames.

    Args:
        a, b: frames ``(c, h, w)`` or ``(f, c, h, w)`` in [0, 1].
        crop_border: pixels dropped on each side before comparing.
        y_channel: compare the BT.601 luma instead of all channels.

    Returns:
        The mean over frames; ``inf`` when some frame is identical (as BasicSR).
    """
    values = [_psnr_frame(x, y) for x, y in _frame_pairs(a, b, crop_border, y_channel)]
    return sum(values) / len(values)


def gaussian_kernel(
    size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``, OpenCV's ``getGaussianKernel``; its outer product with
    itself is the 2-D window of BasicSR's SSIM."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_frame(x: torch.Tensor, y: torch.Tensor) -> float:
    """SSIM of two ``(1, c, h, w)`` frames on the [0, 255] scale."""
    channels = x.shape[1]
    kernel = gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA, x.dtype, x.device)
    rows = kernel.view(1, 1, SSIM_WINDOW, 1).expand(5 * channels, 1, SSIM_WINDOW, 1)
    cols = kernel.view(1, 1, 1, SSIM_WINDOW).expand(5 * channels, 1, 1, SSIM_WINDOW)
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    # Separable Gaussian over the valid region only (no padding): (1, 5c, h-10, w-10).
    blurred = F.conv2d(F.conv2d(maps, cols, groups=5 * channels), rows, groups=5 * channels)
    mu_x, mu_y, xx, yy, xy = blurred.split(channels, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * PIXEL_MAX) ** 2, (SSIM_K2 * PIXEL_MAX) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


def ssim(a: torch.Tensor, b: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al. 2004, "Image quality assessment: from error visibility to
    structural similarity"), mean over frames.

    Per channel on the [0, 255] scale: local statistics under an 11x11 Gaussian window (sigma 1.5)
    over the valid region only (no padding), C1 = (0.01·255)², C2 = (0.03·255)², population
    (not sample) covariances; the SSIM map is averaged over pixels and channels.

    Args:
        a, b: frames ``(c, h, w)`` or ``(f, c, h, w)`` in [0, 1], at least 11x11 after cropping.
        crop_border: pixels dropped on each side before comparing.
        y_channel: compare the BT.601 luma instead of all channels.
    """
    pairs = _frame_pairs(a, b, crop_border, y_channel, min_size=SSIM_WINDOW)
    values = [_ssim_frame(x, y) for x, y in pairs]
    return sum(values) / len(values)
