"""The "lerp" (rectified-flow) schedule and v-prediction conversions (spec §6.1, paper §3).

Dimension key: any tensor shape ``(...)``. A timestep is a float, a 0-d tensor, or a tensor of the
leading dims of the sample (for example ``(b,)`` for ``(b, t, h, w, c)``), broadcast on the right.

Formulas, with ``T = 1000``, ``t`` in ``[0, T]``, ``x_0`` the clean latent, ``x_T`` Gaussian noise::

    A(t) = 1 - t/T,  B(t) = t/T
    x_t = A x_0 + B x_T
    v   ≈ x_T - x_0                          ("v_lerp" prediction; also the training target)
    x_0 = (x_t - B v) / (A + B),  x_T = (x_t + A v) / (A + B)

The coefficients are float32 tensors shaped to broadcast against the sample, so a bfloat16 sample
gives a float32 result, as on the official GPU path (spec §7 step 6: ``x_0`` is float32).
"""

from __future__ import annotations

import torch

NUM_TIMESTEPS = 1000.0  # T: timesteps fed to the DiT are in [0, T], not [0, 1]

Timestep = torch.Tensor | float


def _coefficients(t: Timestep, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A(t), B(t))`` in float32, with trailing singleton dims to broadcast against ``like``."""
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    t = t.reshape(t.shape + (1,) * (like.ndim - t.ndim))
    noise_weight = t / NUM_TIMESTEPS
    return 1.0 - noise_weight, noise_weight


def add_noise(clean: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
    """Forward process ``x_t = A(t) x_0 + B(t) x_T``."""
    a, b = _coefficients(t, clean)
    return a * clean + b * noise


def velocity_target(clean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Training target of the v_lerp prediction, ``v = x_T - x_0`` (equals ``-T dx_t/dt``)."""
    return noise - clean


def predict_clean(noisy: torch.Tensor, v: torch.Tensor, t: Timestep) -> torch.Tensor:
    """Clean latent from a velocity: ``x_0 = (x_t - B v) / (A + B)``."""
    a, b = _coefficients(t, noisy)
    return (noisy - b * v) / (a + b)


def predict_noise(noisy: torch.Tensor, v: torch.Tensor, t: Timestep) -> torch.Tensor:
    """Noise from a velocity: ``x_T = (x_t + A v) / (A + B)``."""
    a, b = _coefficients(t, noisy)
    return (noisy + a * v) / (a + b)
