"""The optimiser step: accumulation, clipping, skipping non-finite steps; keyed randomness."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from seedvr2.train import rng
from seedvr2.train.config import OptimConfig, RunConfig
from seedvr2.train.distributed import DistContext
from seedvr2.train.optim import Updater, learning_rate

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"), parallel="none")


def _updater(**run: object) -> Updater:
    torch.manual_seed(0)
    return Updater("net", nn.Linear(4, 1), OptimConfig(lr=0.1), RunConfig(**run), CPU)



def _loss_fn(updater: Updater):
    def loss(batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        value = (updater.module(x)[:, 0] - y).square().mean()
        return value, {"loss": value}
    return loss


def test_accumulated_micro_batches_equal_one_large_batch() -> None:
    x, y = torch.randn(8, 4), torch.randn(8)
    whole, split = _updater(), _updater(grad_accum=2)
    whole.step(0, [(x, y)], _loss_fn(whole))
    split.step(0, [(x[:4], y[:4]), (x[4:], y[4:])], _loss_fn(split))
    for a, b in zip(whole.module.parameters(), split.module.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_non_finite_loss_skips_the_step_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    updater = _updater()
    before = [p.clone() for p in updater.module.parameters()]
    x, y = torch.randn(4, 4), torch.full((4,), float("nan"))
    with caplog.at_level(logging.WARNING):
        metrics = updater.step(7, [(x, y)], _loss_fn(updater))
    assert metrics["net/skipped"] == 1.0 and updater.skipped == 1
    assert "step 7: non-finite loss in net; step skipped" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(before, updater.module.parameters()))
    assert all(p.grad is None for p in updater.module.parameters())
    metrics = updater.step(8, [(x, torch.zeros(4))], _loss_fn(updater))
    assert metrics["net/skipped"] == 0.0


def test_gradient_norm_is_clipped_and_reported() -> None:
    updater = _updater(grad_clip=1e-3)
    x, y = torch.randn(4, 4), torch.full((4,), 100.0)
    metrics = updater.step(0, [(x, y)], _loss_fn(updater))
    assert metrics["net/grad_norm"] > 1.0  # reported before clipping


def test_warmup_is_linear_then_constant() -> None:
    cfg = OptimConfig(lr=1.0, warmup_steps=4)
    assert [learning_rate(cfg, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_keyed_generators_are_reproducible_and_independent() -> None:
    a = torch.randn(3, generator=rng.generator(1, "noise", 5, 0, 2))
    assert torch.equal(a, torch.randn(3, generator=rng.generator(1, "noise", 5, 0, 2)))
    for other in (rng.generator(2, "noise", 5, 0, 2), rng.generator(1, "data", 5, 0, 2),
                  rng.generator(1, "noise", 5, 0, 3)):
        assert not torch.equal(a, torch.randn(3, generator=other))
