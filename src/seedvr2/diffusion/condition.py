"""The super-resolution condition and the DiT input (spec §6.3, §2).

Dimension key: ``(...)`` leading dims, for example one clip ``(t, h, w)`` or packed tokens ``(l,)``;
``c`` = 16 latent channels. The DiT input is ``[x_t (16) | LQ latent (16) | mask (1)]``.
"""

from __future__ import annotations

import torch

from .schedule import NUM_TIMESTEPS, add_noise
from .timesteps import resolution_timestep_shift


def sr_condition(
    lq_latent: torch.Tensor,  # (..., c) encoded low-quality video
    noise_scale: float = 0.0,
    aug_noise: torch.Tensor | None = None,  # (..., c) Gaussian noise, needed if noise_scale > 0
    latent_shape: tuple[int, int, int] | None = None,  # latent (t, h, w); default lq_latent[:3]
) -> torch.Tensor:  # (..., c + 1)
    """The "sr" condition ``[A(t') lq + B(t') ε | 1]``, ``t' = shift(T · noise_scale)``.

    Noise augmentation (SeedVR §3, "condition noise") blends the LQ latent towards ``aug_noise``
    at ``t' = resolution_timestep_shift(1000 · noise_scale, (t, h, w))``. SeedVR2 inference uses
    ``noise_scale = 0``: t' = 0 and the condition is the clean LQ latent, exactly (no noise needed).
    The mask channel is all ones. The result has ``lq_latent``'s dtype.

    Departure from the official ``get_condition``: it passes ``x.shape[1:] = (h, w, c)`` as the
    latent shape of the shift (harmless at scale 0); we use the clip's ``(t, h, w)``, by default
    the first three dims of a ``(t, h, w, c)`` latent. Packed inputs must pass ``latent_shape``.
    """
    cond = lq_latent
    if noise_scale != 0.0:
        if aug_noise is None:
            raise ValueError("noise_scale > 0 needs aug_noise (same shape as lq_latent)")
        if latent_shape is None:
            if lq_latent.ndim != 4:
                raise ValueError(
                    f"pass latent_shape (t, h, w) for a latent of shape {tuple(lq_latent.shape)}"
                )
            latent_shape = tuple(lq_latent.shape[:3])
        t = resolution_timestep_shift(NUM_TIMESTEPS * noise_scale, latent_shape)
        cond = add_noise(lq_latent, aug_noise, t.to(lq_latent.device)).to(lq_latent.dtype)
    mask = torch.ones_like(lq_latent[..., :1])
    return torch.cat([cond, mask], dim=-1)


def model_input(
    noisy: torch.Tensor,  # (..., c) x_t
    condition: torch.Tensor,  # (..., c + 1) from sr_condition
) -> torch.Tensor:  # (..., 2c + 1)
    """DiT input ``[x_t | LQ latent | mask]``, 33 channels for c = 16 (spec §6.3)."""
    if noisy.shape[:-1] != condition.shape[:-1]:
        raise ValueError(
            f"x_t {tuple(noisy.shape)} and condition {tuple(condition.shape)} differ before the "
            "channel dim"
        )
    return torch.cat([noisy, condition], dim=-1)
