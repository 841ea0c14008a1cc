"""What each stage regresses or updates: PD targets, D frozen in the G step, text dropping."""

from __future__ import annotations

import torch
from torch import nn

from seedvr2.diffusion import NUM_TIMESTEPS
from seedvr2.train.adversarial import AdversarialStage
from seedvr2.train.config import config_from_dict
from seedvr2.train.data import SampleKey
from seedvr2.train.distill import DistillStage
from seedvr2.train.distributed import DistContext
from seedvr2.train.stage import LatentBatch
from train_support import tiny_config

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"), parallel="none")


def _config(stage: str, **sections: dict):
    return config_from_dict(tiny_config("unused", "unused", stage, **sections))


def _batch(stage, clips: int = 2, shape: tuple[int, int, int] = (2, 4, 4)) -> LatentBatch:
    keys = [SampleKey(0, 0, i, 5, 16, 16) for i in range(clips)]
    generators = stage.clip_generators(keys)
    rows = clips * shape[0] * shape[1] * shape[2]
    x0 = torch.randn(rows, 48, generator=generators[0])
    return LatentBatch(x0, torch.randn(rows, 48, generator=generators[1]),
                       torch.tensor([shape] * clips), [stage.text_bank.default] * clips, keys,
                       generators)


class AffineField(nn.Module):
    """A toy teacher: v(x, t) = 0.3 x + t/T, same signature as the DiT."""

    def forward(self, vid, txt, vid_shape, txt_shape, t):
        t_rows = t.expand(len(vid_shape)).repeat_interleave(vid_shape.prod(-1))
        return 0.3 * vid[:, :48] + (t_rows / NUM_TIMESTEPS)[:, None]


def test_one_student_step_lands_where_two_teacher_steps_do() -> None:
    stage = DistillStage(_config("distill", distill={"teacher_steps": 8}), CPU)
    stage.teacher = AffineField()
    batch = _batch(stage)
    t = torch.tensor([1000.0, 500.0])  # student grid of 4 steps: 1000, 750, 500, 250
    x_t, condition = torch.randn(batch.x0.shape), stage.condition(batch, 0.0)
    target, t_end = stage.student_target(x_t, t, condition, batch)
    assert torch.equal(t_end, torch.tensor([750.0, 250.0]))
    teacher = AffineField()
    expected = []
    for x, t0 in zip(x_t.split(batch.lengths), t.tolist()):
        shape = batch.shapes[:1]
        for a, b in ((t0, t0 - 125), (t0 - 125, t0 - 250)):  # two teacher Euler steps
            x = x + (b - a) / NUM_TIMESTEPS * teacher(x, None, shape, None, torch.tensor(a))
        expected.append(x)
    landed = x_t - stage.per_row((t - t_end) / NUM_TIMESTEPS, batch)[:, None] * target
    assert torch.allclose(landed, torch.cat(expected), atol=1e-5)


def test_the_discriminator_is_frozen_during_the_generator_update() -> None:
    stage = AdversarialStage(_config("adversarial"), CPU)
    disc = {k: v.clone() for k, v in stage.discriminator.module.state_dict().items()}
    gen = {k: v.clone() for k, v in stage.generator.module.state_dict().items()}
    stage.generator_update(0, [_batch(stage)])
    assert all(torch.equal(v, disc[k]) for k, v in stage.discriminator.module.state_dict().items())
    assert all(p.grad is None for p in stage.discriminator.module.parameters())
    assert not all(torch.equal(v, gen[k]) for k, v in stage.generator.module.state_dict().items())
    assert all(p.requires_grad for p in stage.discriminator.updater.params)  # unfrozen after


def test_text_is_dropped_to_the_null_embedding_only_in_training() -> None:
    stage = DistillStage(_config("distill", text={"drop_prob": 1.0, "length": 4}), CPU)
    batch = _batch(stage)
    dropped = stage.text_bank.select([None, None], batch.generators)
    kept = stage.text_bank.select([None, None], None)
    assert all(torch.equal(e, stage.text_bank.null) for e in dropped)
    assert all(torch.equal(e, stage.text_bank.default) for e in kept)
    assert not torch.equal(stage.text_bank.default, stage.text_bank.null)


def test_condition_noise_stays_within_its_level() -> None:
    stage = DistillStage(_config("distill"), CPU)
    batch = _batch(stage)
    clean = stage.condition(batch, 0.0)
    assert torch.equal(clean[:, :48], batch.lq) and bool((clean[:, 48] == 1).all())
    noisy = stage.condition(_batch(stage), 0.25)
    moved = (noisy[:, :48] - batch.lq).abs().mean()
    assert 0 < moved < (torch.randn(1000).abs().mean() + batch.lq.abs().mean()) * 0.3
