"""Timesteps: sampling grid, resolution-dependent shift, training draws (spec §6.2-6.3).

Dimension key: ``n`` sampling steps, ``b`` batch. Timesteps are float32 in ``[0, T]``, T = 1000.
"""

from __future__ import annotations

import torch

from .schedule import NUM_TIMESTEPS

# Shift as a linear function of pixel count: (pixels, shift) through two reference points
# (official ``timestep_transform``; SD3-style resolution-dependent shifting).
_IMAGE_SHIFT_POINTS = ((256 * 256, 1.0), (1024 * 1024, 3.2))  # pixels = H*W, one frame
_VIDEO_SHIFT_POINTS = ((256 * 256 * 37, 1.0), (1280 * 720 * 145, 5.0))  # pixels = H*W*frames
_VAE_TEMPORAL_FACTOR = 4  # pixel frames = (latent frames - 1) * 4 + 1
_VAE_SPATIAL_FACTOR = 8


def shift_timesteps(u: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """SD3 time shift of ``u = t/T`` in [0, 1]: ``u' = s u / (1 + (s - 1) u)`` (s = 1: identity)."""
    return shift * u / (1 + (shift - 1) * u)


def uniform_trailing_timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:  # (n,)
    """The official "uniform_trailing" grid ``T · shift(arange(1, 0, -1/steps))``, descending.

    ``torch.arange`` itself is called, in float32, because its CPU kernel's rounding is part of the
    reference values (a NumPy arange differs by up to 1e-3 at 50 steps). Examples: 1 -> [1000];
    2 -> [1000, 500]; 4 -> [1000, 750, 500, 250].

    Departure from the official code: for some step counts (49, 98, 103, ...) that arange rounds
    to ``steps + 1`` values, the last about 1e-13; the official sampler then spends one more model
    call at t ~ 0 that changes ``x_0`` by ~1e-16 relative. We keep the first ``steps`` values.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    u = torch.arange(1.0, 0.0, -1 / steps, dtype=torch.float32)[:steps]
    if shift != 1.0:
        u = shift_timesteps(u, shift)
    return u * NUM_TIMESTEPS


def _resolution_shift(latent_shape: tuple[int, int, int]) -> torch.Tensor:
    """Shift factor for a clip's latent ``(t, h, w)``: linear in its pixel count (spec §6.3).

    Evaluated as the official code does (``slope * int64 tensor + intercept``, float32), which
    reproduces its values bit for bit.
    """
    t, h, w = (int(n) for n in latent_shape)  # also accepts a row of a (b, 3) shape tensor
    frames = (t - 1) * _VAE_TEMPORAL_FACTOR + 1
    pixels = h * w * _VAE_SPATIAL_FACTOR**2
    if frames == 1:
        (x1, y1), (x2, y2) = _IMAGE_SHIFT_POINTS
    else:
        (x1, y1), (x2, y2) = _VIDEO_SHIFT_POINTS
        pixels *= frames
    slope = (y2 - y1) / (x2 - x1)
    return slope * torch.tensor(pixels) + (y1 - slope * x1)


def resolution_timestep_shift(
    t: torch.Tensor | float,
    latent_shape: tuple[int, int, int],  # latent (t, h, w) of the clip
) -> torch.Tensor:
    """The official ``timestep_transform``: shift ``t`` towards T for larger clips (spec §6.3).

    ``frames = (t_lat - 1)·4 + 1``, ``H, W = 8 h_lat, 8 w_lat``; the shift is interpolated linearly
    through (256², 1.0) and (1024², 3.2) in H·W for images, through (256²·37, 1.0) and
    (1280·720·145, 5.0) in H·W·frames for videos (extrapolated outside), then applied as
    :func:`shift_timesteps`. 0 and T are fixed points. Example: 500 at (1, 90, 160) -> 744.63.
    """
    u = torch.as_tensor(t, dtype=torch.float32) / NUM_TIMESTEPS
    return shift_timesteps(u, _resolution_shift(latent_shape)) * NUM_TIMESTEPS


def logit_normal_timesteps(
    count: int,
    generator: torch.Generator,
    loc: float = 0.0,
    scale: float = 1.0,
) -> torch.Tensor:  # (b,)
    """Training timesteps ``t = T · sigmoid(n)``, ``n ~ N(loc, scale²)`` (SD3 logit-normal).

    Drawn with ``generator`` on its device, so a run is reproducible from the generator's seed.
    The official config uses loc 0, scale 1 (spec training.md §1a).
    """
    n = torch.randn(count, generator=generator, device=generator.device, dtype=torch.float32)
    return torch.sigmoid(loc + scale * n) * NUM_TIMESTEPS
