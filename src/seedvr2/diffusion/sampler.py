"""Euler sampling over a timestep grid, and classifier-free guidance (spec §6.2, §6.4).

The sampler only sees a callable ``predict_v(x_t, t) -> v`` (``t`` a 0-d float32 tensor in
[0, T]); binding the model, its text and its condition is the caller's job. Dimension key: any
sample shape ``(...)``, for example packed tokens ``(l, c)`` or one clip ``(t, h, w, c)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .schedule import add_noise, predict_clean, predict_noise

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> v ≈ x_T - x_0


def euler_sample(
    predict_v: VelocityFn,
    noise: torch.Tensor,  # (...) the sample at the first timestep, usually x_T
    timesteps: torch.Tensor,  # (n,) descending, e.g. uniform_trailing_timesteps(n)
) -> torch.Tensor:  # (...) x_0
    """Deterministic Euler sampler with "return endpoint", as the official sampler (spec §6.2).

    For each consecutive pair (t, s): ``v = f(x, t)``, ``x_0, x_T`` from (x, v), then
    ``x <- A(s) x_0 + B(s) x_T``. After the loop, one more call at the last timestep returns its
    ``x_0``. So ``n`` timesteps cost exactly ``n`` calls; one step (``[1000]``) is the SeedVR2
    one-step generator ``x_0 = x_T - v(x_T, 1000)``.
    """
    if timesteps.ndim != 1 or len(timesteps) == 0:
        raise ValueError(f"timesteps must be a non-empty 1-D tensor, got {tuple(timesteps.shape)}")
    timesteps = timesteps.to(device=noise.device, dtype=torch.float32)
    x = noise
    for t, s in zip(timesteps[:-1], timesteps[1:]):
        v = predict_v(x, t)
        x = add_noise(predict_clean(x, v, t), predict_noise(x, v, t), s)
    t = timesteps[-1]
    return predict_clean(x, predict_v(x, t), t)


def classifier_free_guidance(
    positive: torch.Tensor,
    negative: torch.Tensor,
    scale: float,
    rescale: float = 0.0,
) -> torch.Tensor:
    """``cfg = neg + scale (pos - neg)``, optionally rescaled towards the std of ``pos``.

    Rescale (Lin et al. 2024, "Common Diffusion Noise Schedules...", §3.4, as the official code):
    ``cfg *= rescale · std(pos) / std(cfg) + (1 - rescale)``, std over every dim but the first
    (per sample; per token on packed ``(l, c)`` tensors, as the official sampler calls it).
    """
    guided = negative + scale * (positive - negative)
    if rescale != 0.0:
        dims = list(range(1, positive.ndim))
        ratio = positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
        guided = guided * (rescale * ratio + (1 - rescale))
    return guided


def guided_velocity(
    predict_positive: VelocityFn,
    predict_negative: VelocityFn,
    scale: float,
    rescale: float = 0.0,
) -> VelocityFn:
    """A :data:`VelocityFn` applying CFG; at ``scale == 1`` the negative branch is never called."""
    if scale == 1.0:
        return predict_positive

    def predict_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return classifier_free_guidance(
            predict_positive(x_t, t), predict_negative(x_t, t), scale, rescale
        )

    return predict_v
