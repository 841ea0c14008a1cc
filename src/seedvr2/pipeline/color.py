"""Colour correction of the restored frames against the (resized) low-quality input.

A one-step generator can drift in colour; these transfer the input's colour onto the output.

* ``wavelet`` (official demo, StableSR ``wavelet_reconstruction``): high frequencies of the output
  plus low frequencies of the input, from a 5-level dilated 3x3 binomial blur pyramid.
* ``adain``: per-frame, per-channel mean and standard deviation of the input.
* ``lab``: lightness of the output, mean/std of the a*b* chroma from the input (CIELAB, D65).
* ``none``: unchanged.

All take (f, 3, h, w) tensors in [0, 1]; outputs are not clamped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from seedvr2.errors import InputError


def _binomial_blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    padded = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, dilation=dilation, groups=x.shape[1])


def wavelet_low(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Low frequencies of (f, c, h, w): the blur at dilations 1, 2, 4, 8, 16."""
    low = x
    for level in range(levels):
        low = _binomial_blur(low, 2**level)
    return low


def wavelet_transfer(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``high(content) + low(reference)``, computed as ``content + low(reference - content)``:
    the blur is linear, so one pyramid instead of two."""
    return content + wavelet_low(reference - content)


def _match_moments(x: torch.Tensor, ref: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per frame and channel: normalise ``x`` then give it ``ref``'s mean and std."""
    mean, std = x.mean((-2, -1), keepdim=True), x.std((-2, -1), keepdim=True)
    ref_mean, ref_std = ref.mean((-2, -1), keepdim=True), ref.std((-2, -1), keepdim=True)
    return (x - mean) / (std + eps) * ref_std + ref_mean


def adain_transfer(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return _match_moments(content, reference)


_RGB_TO_XYZ = torch.tensor([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (f, 3, h, w) in [0, 1] -> CIELAB (L in [0, 100])."""
    linear = torch.where(rgb > 0.04045, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,fjhw->fihw", _RGB_TO_XYZ.to(rgb), linear)
    xyz = xyz / _WHITE_D65.to(rgb)[:, None, None]
    f = torch.where(xyz > _EPS, xyz.clamp(min=_EPS).pow(1 / 3), (_KAPPA * xyz + 16) / 116)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_lab`."""
    fy = (lab[:, 0] + 16) / 116
    fx, fz = fy + lab[:, 1] / 500, fy - lab[:, 2] / 200
    f = torch.stack([fx, fy, fz], dim=1)
    xyz = torch.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65.to(lab)[:, None, None]
    linear = torch.einsum("ij,fjhw->fihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab), xyz)
    return torch.where(
        linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear
    )


def lab_transfer(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    lab, ref = rgb_to_lab(content), rgb_to_lab(reference)
    chroma = _match_moments(lab[:, 1:], ref[:, 1:])
    return lab_to_rgb(torch.cat([lab[:, :1], chroma], dim=1))


COLOR_CORRECTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "wavelet": wavelet_transfer,
    "adain": adain_transfer,
    "lab": lab_transfer,
    "none": lambda content, reference: content,
}


def color_correct(content: torch.Tensor, reference: torch.Tensor, method: str) -> torch.Tensor:
    """Apply the named correction; ``reference`` is the resized input at the output size."""
    if method not in COLOR_CORRECTIONS:
        raise InputError(f"unknown colour correction {method!r}; choose {sorted(COLOR_CORRECTIONS)}")
    if content.shape != reference.shape:
        raise InputError(f"content {tuple(content.shape)} != reference {tuple(reference.shape)}")
    return COLOR_CORRECTIONS[method](content, reference)


def keep_change(output: torch.Tensor, reference: torch.Tensor, strength: float) -> torch.Tensor:
    """``reference + strength * (output - reference)``: how much of the model's change to the
    resized input to keep (0: none, 1: all, above 1: exaggerated). Returns ``output`` itself at 1.
    """
    if strength == 1.0:
        return output
    return torch.lerp(reference, output, strength)
