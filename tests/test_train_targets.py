"""What each stage regresses or updates: PD targets, D frozen in the G step, text dropping."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedvr2.diffusion import NUM_TIMESTEPS
from seedvr2.models.discriminator import DiscriminatorOutput
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


# --- adversarial stage: losses by value against an independent computation ----------------------

ADV = {"r1_weight": 3.0, "r2_weight": 5.0, "sigma": 0.2, "l1_weight": 0.7, "feature_weight": 0.3,
       "shift_image": 1.5, "shift_video": 6.0}  # all distinct, none the default


class ToyGenerator(nn.Module):
    """``v = a x_t + b lq``: the one-step output is ``x̂ = z - v = (1 - a) z - b lq``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(0.3)), nn.Parameter(torch.tensor(0.2))

    def forward(self, vid, txt, vid_shape, txt_shape, t):
        return self.a * vid[:, :48] + self.b * vid[:, 48:96]


class ToyDiscriminator(nn.Module):
    """Known logits ``mean_rows tanh(row · w + c t/T + k mean(text))`` per clip, and two
    feature maps of the clip rows (it sees the rows ``[x | lq | 1]``, text and ``t``; terms
    added outside the tanh would cancel in every paired difference)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.w = nn.Parameter(torch.randn(97, generator=g) * 0.2)
        self.f = nn.Parameter(torch.rand(48, generator=g) + 0.5)
        self.g = nn.Parameter(torch.randn(48, generator=g))
        self.c, self.k = nn.Parameter(torch.tensor(0.8)), nn.Parameter(torch.tensor(0.5))

    def forward(self, vid, txt, vid_shape, txt_shape, t) -> DiscriminatorOutput:
        lengths = vid_shape.prod(-1)
        text = torch.stack([e.mean() for e in txt.split(txt_shape[:, 0].tolist())])
        offset = (self.c * t / NUM_TIMESTEPS + self.k * text).repeat_interleave(lengths)
        rows = torch.tanh(vid @ self.w + offset).split(lengths.tolist())
        logits = torch.stack([r.mean() for r in rows])
        x = vid[:, :48]
        return DiscriminatorOutput(logits, [x * self.f, torch.tanh(x + self.g)])


def _adversarial_stage() -> AdversarialStage:
    stage = AdversarialStage(_config("adversarial", adversarial=ADV), CPU)
    stage.generator.module, stage.discriminator.module = ToyGenerator(), ToyDiscriminator()
    return stage


def _mixed_batch(stage) -> LatentBatch:
    """A 5-frame clip (2x4x4 latent) and an image (1x4x4), with fresh per-clip generators."""
    keys = [SampleKey(0, 0, 0, 5, 16, 16), SampleKey(0, 0, 1, 1, 16, 16)]
    shapes = torch.tensor([[2, 4, 4], [1, 4, 4]])
    data = torch.Generator().manual_seed(5)
    x0, lq = torch.randn(48, 48, generator=data), torch.randn(48, 48, generator=data)
    text = [stage.text_bank.default, stage.text_bank.null]
    return LatentBatch(x0, lq, shapes, text, keys, stage.clip_generators(keys))


class Reference:
    """The adversarial losses written out from the paper (eq. 3-4) with the toy networks.

    Per-clip draws come from the clip's own generator in the stage's documented order: the
    generator's noise ``z``, the discriminator's ``u`` (``t_D = T shift(u, s)``), then (D step)
    the R1 noise of ``x`` and the R2 noise of ``x̂``.
    """

    def __init__(self, stage: AdversarialStage, batch: LatentBatch) -> None:
        self.stage, self.batch = stage, batch
        self.gens = stage.clip_generators(batch.keys)
        self.lengths = batch.lengths
        self.z = torch.cat([torch.randn(n, 48, generator=g)
                            for n, g in zip(self.lengths, self.gens)])
        u = torch.stack([torch.rand((), generator=g) for g in self.gens])
        s = torch.tensor([ADV["shift_video"], ADV["shift_image"]])
        self.t = NUM_TIMESTEPS * s * u / (1 + (s - 1) * u)
        self.condition = torch.cat([batch.lq, torch.ones(len(batch.lq), 1)], dim=1)
        generator = stage.generator.module
        self.fake = self.z - generator(torch.cat([self.z, self.condition], 1), None, None, None,
                                       None)

    def noise(self) -> torch.Tensor:
        return torch.cat([torch.randn(n, 48, generator=g) for n, g in zip(self.lengths, self.gens)])

    def judge(self, x: torch.Tensor) -> DiscriminatorOutput:
        txt = torch.cat(self.batch.text)
        txt_shape = torch.tensor([[len(e)] for e in self.batch.text])
        return self.stage.discriminator.module(torch.cat([x, self.condition], 1), txt,
                                               self.batch.shapes, txt_shape, self.t)

    def generator_terms(self) -> dict[str, torch.Tensor]:
        real, fake = self.judge(self.batch.x0), self.judge(self.fake)
        l1 = torch.stack([(a - b).abs().mean() for a, b in
                          zip(self.fake.split(self.lengths), self.batch.x0.split(self.lengths))])
        features = [(f - r.detach()).abs().mean() for f, r in zip(fake.features, real.features)]
        return {"gan": F.softplus(real.logits.detach() - fake.logits).mean(), "l1": l1.mean(),
                "feature": torch.stack(features).mean()}

    def discriminator_terms(self) -> dict[str, torch.Tensor]:
        fake = self.fake.detach()
        real_pert = self.batch.x0 + ADV["sigma"] * self.noise()
        fake_pert = fake + ADV["sigma"] * self.noise()
        d_real, d_fake = self.judge(self.batch.x0).logits, self.judge(fake).logits
        return {"gan": F.softplus(d_fake - d_real).mean(),
                "r1": (d_real - self.judge(real_pert).logits).square().mean(),
                "r2": (d_fake - self.judge(fake_pert).logits).square().mean()}


def _gradients(loss: torch.Tensor, module: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(module.parameters()), allow_unused=True))


def _assert_close_gradients(ours: list, expected: list) -> None:
    for a, b in zip(ours, expected):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), (a, b)


def test_generator_step_loss_is_rpgan_plus_weighted_l1_and_feature_matching() -> None:
    stage = _adversarial_stage()
    total, metrics = stage.generator_loss(_mixed_batch(stage))
    reference = Reference(stage, _mixed_batch(stage))
    terms = reference.generator_terms()
    expected = (terms["gan"] + ADV["l1_weight"] * terms["l1"]
                + ADV["feature_weight"] * terms["feature"])
    for name, value in terms.items():
        assert float(metrics[f"g/{name}"]) == pytest.approx(float(value.detach()), rel=1e-5), name
    assert float(total) == pytest.approx(float(expected.detach()), rel=1e-5)
    generator = stage.generator.module
    _assert_close_gradients(_gradients(total, generator), _gradients(expected, generator))


def test_discriminator_step_loss_is_rpgan_plus_weighted_r1_on_reals_and_r2_on_fakes() -> None:
    stage = _adversarial_stage()
    total, metrics = stage.discriminator_loss(_mixed_batch(stage))
    reference = Reference(stage, _mixed_batch(stage))
    terms = reference.discriminator_terms()
    expected = terms["gan"] + ADV["r1_weight"] * terms["r1"] + ADV["r2_weight"] * terms["r2"]
    for name, value in terms.items():
        assert float(metrics[f"d/{name}"]) == pytest.approx(float(value.detach()), rel=1e-5), name
    assert float(total) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert all(float(v.detach()) > 1e-4 for v in terms.values())  # every term is exercised
    discriminator = stage.discriminator.module
    _assert_close_gradients(_gradients(total, discriminator), _gradients(expected, discriminator))
    # the generator's output is a constant of the D step: no gradient reaches it
    assert all(g is None for g in _gradients(total, stage.generator.module))


# --- distillation: hand-over between rounds, guidance in round 1 -------------------------------


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_each_round_starts_with_the_ema_student_as_teacher() -> None:
    cfg = _config("distill", distill={"teacher_steps": 8, "round_steps": 2},
                  optim={"lr": 1e-2}, run={"ema_decay": 0.5})
    stage = DistillStage(cfg, CPU)
    stage.latents = lambda batch: batch  # the test feeds latent batches directly
    initial = _state(stage.teacher)
    assert _same(initial, _state(stage.dit.module))
    student_steps = []
    for step in range(6):
        ema_before = _state(stage.dit.averaged)
        metrics = stage.train_step(step, [_batch(stage)])
        student_steps.append(metrics["student_steps"])
        teacher = _state(stage.teacher)
        if step < 2:
            assert _same(teacher, initial), step
        elif step % 2 == 0:  # a new round: the EMA as it was before this step's update
            assert _same(teacher, ema_before), step
            assert not _same(teacher, _state(stage.dit.module)), step  # the EMA, not the student
            handed_over = teacher
        else:
            assert _same(teacher, handed_over), step  # frozen within the round
    assert student_steps == [4, 4, 2, 2, 1, 1]
    assert stage.state_dict() == {"round": 2}


class TextField(nn.Module):
    """A text-dependent toy teacher: ``v = 0.3 x + t/T + mean(text)`` per clip."""

    def forward(self, vid, txt, vid_shape, txt_shape, t):
        lengths = vid_shape.prod(-1)
        text = torch.stack([e.mean() for e in txt.split(txt_shape[:, 0].tolist())])
        t_rows = t.expand(len(vid_shape)).repeat_interleave(lengths)
        offset = t_rows / NUM_TIMESTEPS + text.repeat_interleave(lengths)
        return 0.3 * vid[:, :48] + offset[:, None]


@pytest.mark.parametrize("round_index", [0, 1])
def test_the_teacher_is_guided_against_the_null_text_in_the_first_round_only(
    round_index: int,
) -> None:
    scale = 3.0
    stage = DistillStage(_config("distill", distill={"teacher_steps": 8,
                                                     "first_round_cfg": scale}), CPU)
    stage.teacher, stage.round = TextField(), round_index
    batch = _batch(stage)
    batch.text = [stage.text_bank.default, 2 * stage.text_bank.default + 1]
    t = torch.tensor([1000.0, 500.0])
    x_t, condition = torch.randn(batch.x0.shape), stage.condition(batch, 0.0)
    target, t_end = stage.student_target(x_t, t, condition, batch)
    # written out: CFG of v(text) and v(null) = v(0): 0.3 x + t/T + w mean(text)
    w = scale if round_index == 0 else 1.0
    half = NUM_TIMESTEPS / stage.teacher_steps()
    expected = []
    for x, t0, text in zip(x_t.split(batch.lengths), t.tolist(), batch.text):
        for a in (t0, t0 - half):
            x = x - half / NUM_TIMESTEPS * (0.3 * x + a / NUM_TIMESTEPS + w * float(text.mean()))
        expected.append(x)
    landed = x_t - stage.per_row((t - t_end) / NUM_TIMESTEPS, batch)[:, None] * target
    assert torch.allclose(landed, torch.cat(expected), atol=1e-5)
