"""Loss functions (paper §3.3, eq. 3-4; spec §2) and the EMA, checked on hand-computed cases."""

import copy
import math

import pytest
import torch
from torch import nn

from seedvr2.train import losses
from seedvr2.train.ema import EMA


def softplus(u: float) -> float:
    return math.log1p(math.exp(u))


# --- adversarial losses -------------------------------------------------------------------------


def test_rpgan_values_match_hand_computation():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([0.0, 1.5])
    d_loss = (softplus(-2.0) + softplus(1.0)) / 2  # softplus(D(x̂) - D(x))
    g_loss = (softplus(2.0) + softplus(-1.0)) / 2  # softplus(D(x) - D(x̂))
    assert losses.rpgan_discriminator_loss(real, fake).item() == pytest.approx(d_loss)
    assert losses.rpgan_generator_loss(real, fake).item() == pytest.approx(g_loss)


def test_rpgan_gradients_push_real_up_and_fake_down_for_d_and_fake_up_for_g():
    real = torch.tensor([2.0], requires_grad=True)
    fake = torch.tensor([0.0], requires_grad=True)
    losses.rpgan_discriminator_loss(real, fake).backward()
    assert real.grad.item() < 0 < fake.grad.item()  # descent raises D(x), lowers D(x̂)
    assert real.grad.item() == pytest.approx(-torch.sigmoid(torch.tensor(-2.0)).item())
    real.grad = fake.grad = None
    losses.rpgan_generator_loss(real.detach(), fake).backward()
    assert fake.grad.item() < 0  # the generator raises D(x̂)


def test_rpgan_rejects_unpaired_logits():
    with pytest.raises(ValueError, match="paired"):
        losses.rpgan_discriminator_loss(torch.zeros(2), torch.zeros(3))


def test_nonsaturating_values_match_hand_computation():
    real, fake = torch.tensor([2.0]), torch.tensor([0.0])
    expected_d = softplus(-2.0) + math.log(2.0)
    assert losses.nonsaturating_discriminator_loss(real, fake).item() == pytest.approx(expected_d)
    assert losses.nonsaturating_generator_loss(fake).item() == pytest.approx(math.log(2.0))


def test_adversarial_losses_are_fp32_for_bf16_logits():
    real, fake = torch.tensor([2.0], dtype=torch.bfloat16), torch.tensor([0.0])
    assert losses.rpgan_discriminator_loss(real, fake.bfloat16()).dtype == torch.float32


# --- R1 / R2 ------------------------------------------------------------------------------------


def test_approximate_r1_is_zero_for_a_constant_discriminator():
    x = torch.randn(4, 3, 5)
    perturbed = losses.perturb(x, 0.1, torch.Generator().manual_seed(0))
    constant = torch.full((4,), 0.7)  # D(x) = D(x + σε) = 0.7
    assert not torch.equal(perturbed, x)
    assert losses.approximate_r1(constant, constant.clone()).item() == 0.0


def test_approximate_r1_equals_the_closed_form_for_a_linear_discriminator():
    torch.manual_seed(0)
    x, w, sigma = torch.randn(3, 8), torch.randn(8), 0.1
    perturbed = losses.perturb(x, sigma, torch.Generator().manual_seed(7))
    noise = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))  # the same ε
    expected = ((sigma * noise @ w) ** 2).mean().item()  # (D(x) - D(x+σε))² = (σ wᵀε)²
    real, real_perturbed = x @ w, perturbed @ w
    assert losses.approximate_r1(real, real_perturbed).item() == pytest.approx(expected, rel=1e-4)
    assert losses.approximate_r2(real, real_perturbed) == losses.approximate_r1(real, real_perturbed)


def test_gradient_penalty_of_a_linear_discriminator_is_the_squared_weight_norm():
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(5, 2, requires_grad=True)
    assert losses.gradient_penalty(x @ w, x).item() == pytest.approx(25.0)


def test_approximate_r1_matches_sigma_squared_times_exact_r1_on_an_mlp():
    """Spec §2: E_ε L_aR1 ≈ σ² E‖∇D‖², i.e. λ·aR1 ≈ (γ/2)·R1 with γ = 2λσ²."""
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    sigma, draws = 1e-3, 4000
    x = torch.randn(2, 6, dtype=torch.float64)
    repeated = x.repeat_interleave(draws, 0).requires_grad_(True)
    perturbed = losses.perturb(repeated, sigma, torch.Generator().manual_seed(1)).double()
    logits = disc(repeated).squeeze(1)
    approx = losses.approximate_r1(logits, disc(perturbed).squeeze(1))
    exact = losses.gradient_penalty(logits, repeated)
    assert approx.item() == pytest.approx(sigma**2 * exact.item(), rel=0.05)


def test_perturb_is_reproducible_and_fp32():
    x = torch.zeros(2, 3, dtype=torch.bfloat16)
    a = losses.perturb(x, 0.1, torch.Generator().manual_seed(3))
    b = losses.perturb(x, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert a.std().item() == pytest.approx(0.1, rel=0.8)


# --- feature matching, L1, MSE, weighting -------------------------------------------------------


def test_feature_matching_is_the_mean_over_layers_of_mean_absolute_differences():
    fake = [torch.ones(4, 2), torch.full((3, 5), 3.0)]
    real = [torch.zeros(4, 2), torch.zeros(3, 5)]
    assert losses.feature_matching_loss(fake, real).item() == pytest.approx((1.0 + 3.0) / 2)


def test_feature_matching_normalises_each_layer_by_its_real_feature_scale():
    fake = [torch.tensor([[3.0, -1.0]]), torch.tensor([[10.0]])]
    real = [torch.tensor([[2.0, -2.0]]), torch.tensor([[5.0]])]
    expected = (1.0 / 2.0 + 5.0 / 5.0) / 2
    loss = losses.feature_matching_loss(fake, real, normalize=True)
    assert loss.item() == pytest.approx(expected)


def test_feature_matching_sends_gradients_to_the_fake_features_only():
    fake, real = torch.zeros(2, 3, requires_grad=True), torch.ones(2, 3, requires_grad=True)
    losses.feature_matching_loss([fake], [real]).backward()
    assert real.grad is None
    assert torch.allclose(fake.grad, torch.full((2, 3), -1 / 6))


def test_feature_matching_rejects_mismatched_layers():
    with pytest.raises(ValueError, match="feature"):
        losses.feature_matching_loss([torch.zeros(2)], [])


def test_l1_and_diffusion_mse_values():
    prediction, target = torch.tensor([1.0, -1.0, 3.0]), torch.tensor([0.0, 1.0, 3.0])
    assert losses.l1_loss(prediction, target).item() == pytest.approx(1.0)
    assert losses.diffusion_mse(prediction, target).item() == pytest.approx(5.0 / 3)


def test_weighted_sum_weights_the_total_and_logs_unweighted_detached_terms():
    gan = torch.tensor(2.0, requires_grad=True)
    terms = {"gan": gan, "l1": torch.tensor(4.0)}
    result = losses.weighted_sum(terms, {"gan": 1.0, "l1": 0.1})
    assert result.total.item() == pytest.approx(2.4)
    assert result.total.requires_grad and not result.terms["gan"].requires_grad
    assert result.terms["l1"].item() == 4.0
    with pytest.raises(ValueError, match="weights"):
        losses.weighted_sum(terms, {"gan": 1.0})


# --- EMA ----------------------------------------------------------------------------------------


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_ema_after_n_updates_matches_the_closed_form():
    model = _net()
    ema = EMA(copy.deepcopy(model).requires_grad_(False), decay=0.9)
    start = copy.deepcopy(model.state_dict())
    targets = []
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(step + 1.0)
        targets.append(copy.deepcopy(model.state_dict()))
        ema.update(model)
    d, n = 0.9, 5
    # θ_n = dⁿ θ_0 + (1 - d) Σ_k d^(n-k) θ_k
    for name, average in ema.shadow.named_parameters():
        expected = d**n * start[name] + sum(
            (1 - d) * d ** (n - k) * targets[k - 1][name] for k in range(1, n + 1)
        )
        assert torch.allclose(average, expected, atol=1e-5), name
    assert ema.num_updates == 5


def test_ema_copies_buffers_and_copy_to_restores_the_average():
    model = _net()
    ema = EMA(copy.deepcopy(model), decay=0.5)
    model.train()(torch.randn(8, 3))  # changes the BatchNorm running statistics
    with torch.no_grad():
        model[0].weight.fill_(2.0)
    ema.update(model)
    assert torch.equal(ema.shadow[1].running_mean, model[1].running_mean)
    target = _net()
    ema.copy_to(target)
    assert torch.equal(target[0].weight, ema.shadow[0].weight)


def test_ema_keeps_an_fp32_average_of_a_bf16_model():
    model = _net().to(torch.bfloat16)
    ema = EMA(_net(), decay=0.0)  # decay 0: the average is the model
    ema.update(model)
    assert ema.shadow[0].weight.dtype == torch.float32
    assert torch.equal(ema.shadow[0].weight, model[0].weight.float())


def test_ema_state_dict_round_trip():
    model = _net()
    ema = EMA(copy.deepcopy(model), decay=0.99)
    with torch.no_grad():
        model[0].bias.fill_(1.0)
    ema.update(model)
    restored = EMA(_net(), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.99 and restored.num_updates == 1
    assert torch.equal(restored.shadow[0].bias, ema.shadow[0].bias)


def test_ema_rejects_a_model_of_another_structure():
    ema = EMA(_net())
    with pytest.raises(ValueError, match="differ"):
        ema.update(nn.Linear(3, 4))


def test_log_mse_is_minus_psnr_and_weighs_each_clip_by_its_own_error() -> None:
    target = torch.rand(64, 12) * 2 - 1  # latents that are pixels in [-1, 1]: peak-to-peak 2
    direction = torch.randn(64, 12)
    small = (target + 0.01 * direction).requires_grad_(True)
    large = (target + 0.1 * direction).requires_grad_(True)
    mse = ((small - target) ** 2).mean()
    psnr = 10 * math.log10(4 / float(mse))
    assert float(losses.log_mse_loss(small, target)) == pytest.approx(10 * math.log10(4) - psnr,
                                                                       rel=1e-5)
    (losses.log_mse_loss(small, target) + losses.log_mse_loss(large, target)).backward()
    ratio = small.grad.norm() / large.grad.norm()  # 10x smaller error, 10x larger gradient
    assert float(ratio) == pytest.approx(10.0, rel=1e-4)


def test_relative_mse_weighs_each_clip_by_its_reference_error_with_a_floor() -> None:
    torch.manual_seed(0)
    target = torch.rand(64, 12) * 2 - 1
    direction = torch.randn(64, 12)
    clean_ref, heavy_ref = target + 0.01 * direction, target + 0.1 * direction  # 20 dB apart
    # each prediction halves its own reference's error: the same relative gain, the same loss
    clean = (target + 0.005 * direction).requires_grad_(True)
    heavy = (target + 0.05 * direction).requires_grad_(True)
    floor = 1e-12  # negligible next to the clean reference's 1e-4
    clean_loss = losses.relative_mse_loss(clean, target, clean_ref, floor)
    heavy_loss = losses.relative_mse_loss(heavy, target, heavy_ref, floor)
    assert float(clean_loss) == pytest.approx(0.25, rel=1e-4)
    assert float(heavy_loss) == pytest.approx(0.25, rel=1e-4)
    (clean_loss + heavy_loss).backward()  # 10x smaller error, 100x larger weight: 10x gradient
    assert float(clean.grad.norm() / heavy.grad.norm()) == pytest.approx(10.0, rel=1e-4)
    exact = losses.relative_mse_loss(clean, target, target, floor=1e-3)  # the floor bounds it
    assert float(exact) == pytest.approx(float(((clean - target) ** 2).mean()) / 1e-3, rel=1e-5)


def test_excess_mse_is_zero_below_the_reference_and_relative_above_it() -> None:
    torch.manual_seed(0)
    target = torch.rand(64, 12) * 2 - 1
    direction = torch.randn(64, 12)
    reference = target + 0.01 * direction
    better = (target + 0.005 * direction).requires_grad_(True)
    loss = losses.excess_mse_loss(better, target, reference, floor=1e-12)
    loss.backward()
    assert float(loss) == 0 and float(better.grad.abs().max()) == 0  # improved: left alone
    worse = (target + 0.02 * direction).requires_grad_(True)  # 4x the reference's error
    assert float(losses.excess_mse_loss(worse, target, reference, floor=1e-12)) == \
        pytest.approx(3.0, rel=1e-4)
    near_lossless = target + 1e-4 * direction  # the floor bounds the weight
    error = float(((worse - target) ** 2).mean() - ((near_lossless - target) ** 2).mean())
    assert float(losses.excess_mse_loss(worse, target, near_lossless, floor=1e-3)) == \
        pytest.approx(error / (float(((near_lossless - target) ** 2).mean()) + 1e-3), rel=1e-4)
