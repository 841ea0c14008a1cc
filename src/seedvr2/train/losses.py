"""Loss functions of the three training stages (paper §3.3, eq. 3-4; spec §2).

Pure functions on logits, features and tensors: the caller runs the networks (batching the four
discriminator forwards ``x, x+σε, x̂, x̂+σε`` into one, as spec §2 advises) and applies the
weights (paper: D step 1 / 1000 / 1000, G step 1 / 1.0 or 0.1 / 1.0 or 0.1). Logits are
per-sample scalars, shape ``(b,)``; all adversarial terms are computed in FP32 because the ×1000
penalties drown in BF16 rounding (spec §2 "numerical pitfalls"). Expectations are batch means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

LossDict = dict[str, torch.Tensor]  # named scalar terms, for logging


class WeightedLoss(NamedTuple):
    """A weighted sum of loss terms and the unweighted, detached terms for logging."""

    total: torch.Tensor
    terms: LossDict


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> WeightedLoss:
    """``Σ_k w_k · L_k`` over the named terms; every term needs a weight (and vice versa).

    Terms with weight 0 are still logged, which keeps an ablated term visible in the metrics.
    """
    if set(terms) != set(weights):
        raise ValueError(f"loss terms {sorted(terms)} and weights {sorted(weights)} differ")
    total = sum(weights[name] * value for name, value in terms.items())
    return WeightedLoss(total, {name: value.detach() for name, value in terms.items()})


def _pair(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``D(x) - D(x̂)`` per pair in FP32; pairs must line up (same clip's real and fake)."""
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"paired logits differ in shape: real {tuple(real_logits.shape)}, "
            f"fake {tuple(fake_logits.shape)}"
        )
    return real_logits.float() - fake_logits.float()


def rpgan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing GAN, discriminator side: ``E softplus(D(x̂) - D(x))``.

    Jolicoeur-Martineau, "The relativistic discriminator" (ICLR 2019); used with R1 + R2 by
    R3GAN (Huang et al., NeurIPS 2024) and SeedVR2 §3.3. ``real_logits[i]`` and ``fake_logits[i]``
    are a pair: SeedVR2 pairs ``x`` with the ``x̂`` restored from its own LQ (spec §2).
    """
    return F.softplus(-_pair(real_logits, fake_logits)).mean()


def rpgan_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing GAN, generator side: ``E softplus(D(x) - D(x̂))``.

    The real logits carry no useful gradient here (D is frozen in the G step; compute them under
    ``torch.no_grad``); the fake ones carry the gradient to the generator.
    """
    return F.softplus(_pair(real_logits, fake_logits)).mean()


def nonsaturating_discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor:
    """Non-saturating GAN (Goodfellow et al. 2014; APT's loss, the Table 3 baseline), D side:
    ``E softplus(-D(x)) + E softplus(D(x̂))``."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN, generator side: ``E softplus(-D(x̂))``."""
    return F.softplus(-fake_logits.float()).mean()


def perturb(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``x + σ ε``, ``ε ~ N(0, I)`` drawn from ``generator``, in FP32 (input of the aR1/aR2 terms).

    σ is the standard deviation (the papers write ``N(x, σI)``; spec §2 reads σ as std): σ = 0.1
    for video latents, 0.01 for image-only phases (APT). Noise is drawn on the generator's device.
    """
    noise = torch.randn(x.shape, generator=generator, device=generator.device)
    return x.float() + sigma * noise.to(x.device)


def approximate_r1(logits: torch.Tensor, perturbed_logits: torch.Tensor) -> torch.Tensor:
    """Approximated R1 (APT eq. 9): ``L_aR1 = E ‖D(x, c) - D(x + σε, c)‖²`` on real samples.

    Since ``D(x + σε) - D(x) ≈ σ εᵀ∇D``, ``E_ε L_aR1 ≈ σ² ‖∇_x D‖²``: a weight λ on this term
    acts like an exact R1 ``(γ/2) E‖∇D‖²`` with ``γ = 2λσ²``, without a double backward. Both
    forwards must share ``t_D``, condition, text and dropout state (spec §2); gradients flow
    through both branches.
    """
    return (logits.float() - perturbed_logits.float()).square().mean()


def approximate_r2(fake_logits: torch.Tensor, perturbed_fake_logits: torch.Tensor) -> torch.Tensor:
    """Approximated R2 (SeedVR2 eq. 3): ``L_aR2 = ‖D(x̂, c) - D(N(x̂, σI), c)‖²`` on detached fakes.

    The same finite difference as :func:`approximate_r1`, on generated samples: together with R1
    it makes RpGAN locally convergent (R3GAN), which SeedVR2 credits for the absent mode collapse.
    """
    return approximate_r1(fake_logits, perturbed_fake_logits)


def gradient_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Exact zero-centred penalty ``E ‖∇_x D(x)‖²`` (R1 on reals, R2 on fakes; Mescheder 2018).

    R3GAN's ``R1 = (γ/2) E‖∇D‖²``: multiply by ``γ/2``. ``inputs`` must require grad and
    ``logits`` (one per sample) must come from them; the graph is kept (``create_graph``) so the
    penalty trains D, which needs a double backward (math attention, no FSDP/checkpointing).
    Works on packed inputs too: the squared gradient is summed over all elements and divided by
    the number of samples. Used to validate the approximation (spec §2) and for ablations.
    """
    (grad,) = torch.autograd.grad(logits.float().sum(), inputs, create_graph=True)
    return grad.float().square().sum() / logits.numel()


def feature_matching_loss(
    fake_features: Sequence[torch.Tensor],
    real_features: Sequence[torch.Tensor],
    normalize: bool = False,
) -> torch.Tensor:
    """Feature matching (SeedVR2 eq. 4): ``L_F = (1/N) Σ_i ‖D_i^F(x̂, c) - D_i^F(x, c)‖_1``.

    ``D_i^F`` are D's backbone features entering head ``i`` (blocks 16, 26, 36 of 36; N = 3).
    Each ``‖·‖_1`` is a mean over tokens and channels, so the loss does not grow with resolution
    or clip length and the paper's 0.1-1.0 weights keep their meaning (spec §2). Real features
    are targets (detached). ``normalize`` divides layer ``i``'s term by ``mean |D_i^F(x)|``, a
    documented deviation for when one layer dominates (spec §2); the paper has none.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(
            f"need matching non-empty feature lists, got {len(fake_features)} fake and "
            f"{len(real_features)} real"
        )
    terms = []
    for fake, real in zip(fake_features, real_features):
        if fake.shape != real.shape:
            raise ValueError(f"feature shapes differ: {tuple(fake.shape)} vs {tuple(real.shape)}")
        real = real.detach().float()
        term = (fake.float() - real).abs().mean()
        if normalize:
            term = term / real.abs().mean().clamp_min(torch.finfo(torch.float32).eps)
        terms.append(term)
    return torch.stack(terms).mean()


def l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean |x̂ - x|`` (SeedVR2 §3.3), on latents: pixel-space losses need a VAE decode."""
    return (prediction.float() - target.float()).abs().mean()


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean (x̂ - x)²`` on latents: PSNR's own criterion. Where the prediction sits near the
    target (a model that starts as its bicubic input), L1's gradient is a sign that averages
    to ~0 over a batch; this one carries the error's size (a small CPU model learnt nothing in
    300 steps with L1 and gained 0.19 dB on held-out images with this)."""
    return (prediction.float() - target.float()).square().mean()


def log_mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``10 log10(mean (x̂ - x)² + 1e-10)``: minus the PSNR of one clip, up to a constant, when
    the latent is pixels (a space-to-depth codec). Averaged over clips it weighs each clip by its
    own error (the gradient is the MSE's divided by it), so a clean input whose bicubic up-scale
    is already close counts as much as a heavily degraded one."""
    return 10 * torch.log10(mse_loss(prediction, target) + 1e-10)


def relative_mse_loss(
    prediction: torch.Tensor, target: torch.Tensor, reference: torch.Tensor, floor: float
) -> torch.Tensor:
    """``mean (x̂ - x)² / (mean (r - x)² + floor)``: one clip's squared error relative to that of
    a reference (its LQ latent: what a pass-through model returns, the bicubic up-scale), so the
    start is at most 1 for every clip. Heavily degraded clips then weigh less than in plain MSE,
    where they drown clean ones; unlike the log-MSE, the weight ``1 / (mean (r - x)² + floor)``
    is fixed per clip and bounded by ``1 / floor``, so a flat crop whose error nears zero does
    not drive the step."""
    weight = 1.0 / (mse_loss(reference, target) + floor)
    return mse_loss(prediction, target) * weight.detach()


def excess_mse_loss(
    prediction: torch.Tensor, target: torch.Tensor, reference: torch.Tensor, floor: float
) -> torch.Tensor:
    """``max(0, mean (x̂ - x)² - mean (r - x)²) / (mean (r - x)² + floor)``: how much worse than
    its reference (the LQ latent, the bicubic up-scale) one clip is, relative to the reference's
    own error. Zero, with no gradient, where the clip is at least as good as the reference, so it
    does not hold back a clip already improved; large for a near-lossless clip made worse (a
    soft source sharpened), an error the relative MSE's floor lets pass."""
    reference_error = mse_loss(reference, target).detach()
    excess = torch.relu(mse_loss(prediction, target) - reference_error)
    return excess / (reference_error + floor)


def diffusion_mse(velocity: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Flow-matching loss ``mean ‖F(x_t, c, t) - v‖²`` with ``v = z - x_0`` (lerp schedule,
    spec §1a) or the distillation target ``v*`` (spec §1b)."""
    return (velocity.float() - target.float()).square().mean()
