"""Blur kernels of the Real-ESRGAN degradation model (Wang et al. 2021, §3.1), one per frame.

Gaussian-family kernels use the quadratic form ``q = pᵀ Σ⁻¹ p`` with ``Σ = R diag(σx², σy²) Rᵀ``
(R a rotation by θ) on pixel offsets ``p`` from the centre: Gaussian ``exp(-q/2)``, generalized
Gaussian ``exp(-q^β / 2)``, plateau ``1 / (1 + q^β)``; isotropic variants have ``σy = σx``,
``θ = 0``. The sinc (circular low-pass) kernel is ``ω J1(ω r) / (2π r)``. All are normalised to
sum 1 and vectorised over frames: parameters ``(f,)`` give kernels ``(f, k, k)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .config import BlurConfig, SincConfig
from .sampling import choice, walk, weighted_choice

Profile = Literal["gaussian", "generalized", "plateau"]


def _offsets(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column (x) and row (y) offsets from the kernel centre, each ``(k, k)``."""
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def _normalise(kernels: torch.Tensor) -> torch.Tensor:  # (f, k, k)
    return (kernels / kernels.sum(dim=(-2, -1), keepdim=True)).float()


def gaussian_kernels(
    size: int,
    sigma_x: torch.Tensor,  # (f,)
    sigma_y: torch.Tensor,  # (f,)
    rotation: torch.Tensor,  # (f,) radians
    beta: torch.Tensor | None = None,  # (f,) shape of the generalized / plateau profiles
    profile: Profile = "gaussian",
) -> torch.Tensor:  # (f, k, k)
    """Anisotropic Gaussian, generalized Gaussian or plateau kernels (module docstring)."""
    x, y = _offsets(size)
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    u = (cos * x + sin * y) / sigma_x[:, None, None]  # Rᵀp scaled by the principal σs
    v = (-sin * x + cos * y) / sigma_y[:, None, None]
    q = u.square() + v.square()
    if profile == "gaussian":
        return _normalise(torch.exp(-0.5 * q))
    if beta is None:
        raise ValueError(f"the {profile} profile needs beta")
    powered = q.pow(beta[:, None, None])
    if profile == "generalized":
        return _normalise(torch.exp(-0.5 * powered))
    return _normalise(1.0 / (powered + 1.0))


def sinc_kernels(size: int, cutoff: torch.Tensor) -> torch.Tensor:  # cutoff (f,) -> (f, k, k)
    """Circular low-pass ``ω J1(ω r) / (2π r)``, centre value ``ω² / (4π)`` (its limit at r = 0)."""
    x, y = _offsets(size)
    radius = torch.sqrt(x.square() + y.square())
    omega = cutoff.to(torch.float64)[:, None, None]
    safe = radius.clamp_min(1e-12)
    kernels = omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe)
    kernels = torch.where(radius == 0, omega.square() / (4 * math.pi), kernels)
    return _normalise(kernels)


def random_blur_kernels(
    config: BlurConfig, frames: int, drift: bool, generator: torch.Generator
) -> torch.Tensor:  # (f, k, k)
    """One kernel type and size per clip, its continuous parameters drifting per frame."""
    kind = weighted_choice(generator, config.kernel_probs)
    size = choice(generator, config.kernel_sizes)
    if kind == "sinc":
        cutoff = config.sinc_cutoff_small if size < 13 else config.sinc_cutoff_large
        return sinc_kernels(size, walk(generator, cutoff, frames, drift))
    sigma_x = walk(generator, config.sigma, frames, drift)
    if kind in ("iso", "generalized_iso", "plateau_iso"):
        sigma_y, rotation = sigma_x, torch.zeros(frames, dtype=torch.float64)
    else:
        sigma_y = walk(generator, config.sigma, frames, drift)
        rotation = walk(generator, config.rotation, frames, drift)
    if kind.startswith("generalized"):
        beta, profile = walk(generator, config.beta_generalized, frames, drift), "generalized"
    elif kind.startswith("plateau"):
        beta, profile = walk(generator, config.beta_plateau, frames, drift), "plateau"
    else:
        beta, profile = None, "gaussian"
    return gaussian_kernels(size, sigma_x, sigma_y, rotation, beta, profile)


def random_sinc_kernels(
    config: SincConfig, frames: int, drift: bool, generator: torch.Generator
) -> torch.Tensor:  # (f, k, k)
    """The final sinc filter: size per clip, cutoff drifting per frame."""
    size = choice(generator, config.kernel_sizes)
    return sinc_kernels(size, walk(generator, config.cutoff, frames, drift))
