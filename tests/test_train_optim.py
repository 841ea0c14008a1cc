"""The optimiser step itself: clipping, accumulation, warm-up and skipped steps, seen through SGD.

With plain SGD the update is ``-lr * g``, so each property is read off the weights' change rather
than off a logged number. The toy loss ``<θ, g>`` has gradient ``g`` exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seedvr2.train.config import OptimConfig, RunConfig
from seedvr2.train.distributed import DistContext
from seedvr2.train.optim import Metrics, Updater

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"), parallel="none")
LR = 0.5


class Linear(nn.Module):
    """Two parameter tensors (the clipped norm is global over both); loss ``<(w, b), g>``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.25, 3.0], dtype=torch.float64))

    def flat(self) -> torch.Tensor:
        return torch.cat([self.w, self.b])


def _updater(grad_clip: float | None = None, warmup_steps: int = 0) -> Updater:
    """An Updater of :class:`Linear` whose optimiser is swapped for SGD (the step is ``-lr g``)."""
    run = RunConfig(grad_clip=grad_clip, precision="fp32")
    updater = Updater("toy", Linear(), OptimConfig(lr=LR, warmup_steps=warmup_steps), run, CPU)
    updater.optimizer = torch.optim.SGD(updater.params, lr=LR)
    return updater


def _loss(module: Linear):
    def loss_fn(g: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        loss = (module.flat() * g).sum()
        return loss, {"loss": loss}

    return loss_fn


def _update(updater: Updater, grads: list[torch.Tensor], step: int = 0) -> tuple[torch.Tensor, dict]:
    """The change of the weights over one ``Updater.step`` on micro-batches ``grads``."""
    before = updater.module.flat().detach().clone()
    metrics = updater.step(step, grads, _loss(updater.module))
    return updater.module.flat().detach() - before, metrics


G = torch.tensor([3.0, 0.0, -4.0, 12.0, 0.0], dtype=torch.float64)  # norm 13


def test_without_clipping_the_step_is_minus_lr_times_the_gradient() -> None:
    delta, metrics = _update(_updater(), [G])
    assert torch.allclose(delta, -LR * G, atol=1e-12)
    assert metrics["toy/grad_norm"] == pytest.approx(13.0)


@pytest.mark.parametrize("max_norm", [1.0, 6.5])
def test_clipping_rescales_the_global_gradient_to_the_maximum_norm(max_norm: float) -> None:
    delta, metrics = _update(_updater(grad_clip=max_norm), [G])
    assert torch.allclose(delta, -LR * G * max_norm / 13.0, atol=1e-6)
    assert delta.norm() == pytest.approx(LR * max_norm, rel=1e-6)
    assert metrics["toy/grad_norm"] == pytest.approx(13.0)  # the norm before clipping


def test_clipping_leaves_a_gradient_below_the_maximum_alone() -> None:
    delta, _ = _update(_updater(grad_clip=20.0), [G])
    assert torch.allclose(delta, -LR * G, atol=1e-12)


def test_accumulation_steps_along_the_mean_of_the_micro_batch_gradients() -> None:
    micro = [G, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64), -2 * G]
    delta, metrics = _update(_updater(), micro)
    assert torch.allclose(delta, -LR * torch.stack(micro).mean(0), atol=1e-12)
    start = Linear().flat().detach()
    expected_loss = sum(float((start * g).sum()) for g in micro) / len(micro)
    assert metrics["loss"] == pytest.approx(expected_loss)


def test_clipping_applies_to_the_accumulated_gradient() -> None:
    micro = [G, G / 3]  # mean 2/3 G, norm 26/3: clipped to 2
    delta, metrics = _update(_updater(grad_clip=2.0), micro)
    assert metrics["toy/grad_norm"] == pytest.approx(26 / 3)
    assert torch.allclose(delta, -LR * G * 2.0 / 13.0, atol=1e-6)


@pytest.mark.parametrize("step", [0, 2, 5])
def test_warm_up_scales_the_learning_rate_linearly(step: int) -> None:
    delta, _ = _update(_updater(warmup_steps=4), [G], step=step)
    assert torch.allclose(delta, -LR * min(1.0, (step + 1) / 4) * G, atol=1e-12)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_step_is_skipped_and_leaves_no_gradient_behind(bad: float) -> None:
    updater = _updater()
    poisoned = G.clone()
    poisoned[1] = bad
    delta, metrics = _update(updater, [G, poisoned])
    assert torch.equal(delta, torch.zeros_like(delta)) and metrics["toy/skipped"] == 1.0
    assert updater.skipped == 1
    delta, metrics = _update(updater, [G], step=1)  # the next step sees only its own gradient
    assert torch.allclose(delta, -LR * G, atol=1e-12) and metrics["toy/skipped"] == 0.0
