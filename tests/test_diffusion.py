"""Diffusion maths: schedule conversions, timesteps (golden), Euler sampler, CFG, SR condition."""

from __future__ import annotations

import json

import pytest
import torch

from golden import golden_path, json_keys
from seedvr2.diffusion import (
    add_noise,
    classifier_free_guidance,
    euler_sample,
    guided_velocity,
    logit_normal_timesteps,
    model_input,
    predict_clean,
    predict_noise,
    resolution_timestep_shift,
    sr_condition,
    uniform_trailing_timesteps,
    velocity_target,
)

SHIFT_TOL = 1e-4  # golden README: timesteps to 1e-4


@pytest.mark.parametrize("key", json_keys("timesteps.json"))
def test_golden_timesteps(key: str) -> None:
    expected = json.loads(golden_path("timesteps.json").read_text())[key]
    if key.startswith("trailing_steps_"):
        steps = int(key.removeprefix("trailing_steps_"))
        assert uniform_trailing_timesteps(steps).tolist() == expected
    else:
        timestep, grid = key.split("@")
        shape = tuple(int(n) for n in grid.split("x"))
        got = resolution_timestep_shift(torch.tensor(float(timestep)), shape)
        assert got.dtype == torch.float32
        assert abs(float(got) - expected) < SHIFT_TOL


def test_trailing_timesteps_have_the_requested_length() -> None:
    # torch.arange rounds to steps + 1 values for 49 steps; the spurious last one is dropped.
    for steps in (1, 2, 3, 4, 49, 50, 98):
        timesteps = uniform_trailing_timesteps(steps)
        assert len(timesteps) == steps
        assert timesteps[0] == 1000.0 and (timesteps.diff() < 0).all()


def test_trailing_shift_moves_timesteps_up() -> None:
    plain, shifted = uniform_trailing_timesteps(4), uniform_trailing_timesteps(4, shift=3.0)
    assert shifted[0] == 1000.0 and (shifted[1:] > plain[1:]).all()


@pytest.mark.parametrize("shape", [(1, 90, 160), (25, 90, 160), (3, 34, 60)])
def test_resolution_shift_fixes_both_ends(shape: tuple[int, int, int]) -> None:
    got = resolution_timestep_shift(torch.tensor([0.0, 1000.0]), shape)
    assert got.tolist() == [0.0, 1000.0]


def test_logit_normal_timesteps_are_reproducible_and_in_range() -> None:
    first = logit_normal_timesteps(1000, torch.Generator().manual_seed(0))
    assert torch.equal(first, logit_normal_timesteps(1000, torch.Generator().manual_seed(0)))
    assert first.shape == (1000,) and (first > 0).all() and (first < 1000).all()
    assert abs(float(first.median()) - 500.0) < 50.0  # sigmoid(N(0, 1)) has median 1/2


@pytest.mark.parametrize("t", [0.0, 250.0, 999.0, 1000.0])
def test_conversions_round_trip(t: float) -> None:
    gen = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    noisy = add_noise(clean, noise, t)
    v = velocity_target(clean, noise)
    torch.testing.assert_close(predict_clean(noisy, v, t).double(), clean)
    torch.testing.assert_close(predict_noise(noisy, v, t).double(), noise)


def test_per_sample_timesteps_broadcast_over_trailing_dims() -> None:
    clean, noise = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    noisy = add_noise(clean, noise, torch.tensor([0.0, 500.0]))
    assert noisy[0].eq(0.0).all() and noisy[1].eq(0.5).all()


def test_bfloat16_samples_give_float32_predictions() -> None:
    noisy = torch.randn(4, 16, dtype=torch.bfloat16)
    assert predict_clean(noisy, noisy, 1000.0).dtype == torch.float32


class ConstantVelocity:
    """Toy model: the exact velocity of a straight path from ``clean`` to ``noise``."""

    def __init__(self, clean: torch.Tensor, noise: torch.Tensor) -> None:
        self.v, self.calls = velocity_target(clean, noise), []

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(float(t))
        return self.v


@pytest.mark.parametrize("steps", [1, 2, 4, 50])
def test_euler_with_the_exact_velocity_lands_on_x0(steps: int) -> None:
    clean, noise = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    model = ConstantVelocity(clean, noise)
    out = euler_sample(model, noise, uniform_trailing_timesteps(steps))
    torch.testing.assert_close(out, clean, rtol=0, atol=1e-5)
    assert len(model.calls) == steps


def test_one_step_is_one_call_at_1000_returning_noise_minus_v() -> None:
    noise, v = torch.randn(2, 3, 16)
    calls = []

    def predict_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((x_t, float(t)))
        return v

    out = euler_sample(predict_v, noise, uniform_trailing_timesteps(1))
    assert [t for _, t in calls] == [1000.0] and calls[0][0] is noise
    assert torch.equal(out, noise - v)


def test_two_steps_call_at_1000_then_500() -> None:
    noise = torch.randn(3, 16)
    v1, v2 = torch.randn(2, 3, 16)
    velocities, calls = iter((v1, v2)), []

    def predict_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(float(t))
        return next(velocities)

    out = euler_sample(predict_v, noise, uniform_trailing_timesteps(2))
    assert calls == [1000.0, 500.0]
    x_500 = 0.5 * (noise - v1) + 0.5 * noise  # spec §6.2
    torch.testing.assert_close(out, x_500 - 0.5 * v2)


def test_cfg_scale_one_never_calls_the_negative_branch() -> None:
    def negative(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise AssertionError("negative branch evaluated at cfg scale 1")

    def positive(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t * 2

    predict_v = guided_velocity(positive, negative, scale=1.0)
    x = torch.randn(4, 16)
    assert torch.equal(predict_v(x, torch.tensor(1000.0)), x * 2)


def test_cfg_combines_positive_and_negative() -> None:
    x = torch.randn(4, 16)
    predict_v = guided_velocity(lambda x_t, t: x_t + 1, lambda x_t, t: x_t, scale=7.5)
    torch.testing.assert_close(predict_v(x, torch.tensor(500.0)), x + 7.5)


def test_cfg_rescale_one_matches_the_positive_std() -> None:
    positive, negative = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(2))
    guided = classifier_free_guidance(positive, negative, scale=6.5, rescale=1.0)
    torch.testing.assert_close(guided.std(dim=-1), positive.std(dim=-1))
    assert torch.equal(
        classifier_free_guidance(positive, negative, 6.5, rescale=0.0),
        negative + 6.5 * (positive - negative),
    )


def test_sr_condition_is_lq_then_a_mask_of_ones() -> None:
    lq = torch.randn(2, 4, 6, 16)
    cond = sr_condition(lq)
    assert cond.shape == (2, 4, 6, 17) and cond.dtype == lq.dtype
    assert torch.equal(cond[..., :16], lq)
    assert cond[..., 16].eq(1.0).all()


def test_model_input_order_is_noisy_lq_mask() -> None:
    noisy, lq = torch.randn(2, 2, 4, 6, 16)
    inp = model_input(noisy, sr_condition(lq))
    assert inp.shape == (2, 4, 6, 33)
    assert torch.equal(inp[..., :16], noisy)
    assert torch.equal(inp[..., 16:32], lq)
    assert inp[..., 32].eq(1.0).all()


def test_model_input_rejects_mismatched_grids() -> None:
    with pytest.raises(ValueError, match="differ"):
        model_input(torch.zeros(2, 4, 16), torch.zeros(2, 5, 17))


def test_noise_augmentation_at_scale_zero_is_the_clean_lq() -> None:
    lq, noise = torch.randn(2, 2, 4, 6, 16)
    assert torch.equal(sr_condition(lq, 0.0, noise)[..., :16], lq)


def test_noise_augmentation_uses_the_shifted_timestep_of_the_clip_shape() -> None:
    lq, noise = torch.randn(2, 25, 4, 6, 16, dtype=torch.float64)
    t = float(resolution_timestep_shift(100.0, (25, 4, 6)))
    got = sr_condition(lq, 0.1, noise)[..., :16]
    torch.testing.assert_close(got, (1 - t / 1000) * lq + t / 1000 * noise)
    # packed tokens need the clip shape spelled out; it gives the same result
    packed = sr_condition(lq.flatten(0, 2), 0.1, noise.flatten(0, 2), latent_shape=(25, 4, 6))
    torch.testing.assert_close(packed[..., :16], got.flatten(0, 2))


def test_noise_augmentation_needs_noise() -> None:
    with pytest.raises(ValueError, match="aug_noise"):
        sr_condition(torch.zeros(1, 2, 2, 16), noise_scale=0.1)
