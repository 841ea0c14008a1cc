"""Stage 2: progressive distillation, 64 -> 32 -> ... -> 1 Euler steps (paper; spec §1b).

Round ``k`` (``distill.round_steps`` optimiser steps each) has a teacher sampling with
``N = teacher_steps / 2^k`` uniform trailing steps and a student learning ``N / 2``. For a clip,
pick a student grid point ``t = (1 - i/n) T`` (``n = N/2``, ``i`` uniform), run two teacher Euler
steps ``t -> t' = t - T/2n -> t'' = t - T/n`` and regress the velocity that reaches ``x_t''`` in
one step, ``v* = (x_t - x_t'') T / (t - t'')`` (spec §1b, "student target for a flow model"). The
teacher uses CFG ``first_round_cfg`` in round 1 only. The student starts each round from the
last; the next round's teacher is the student's EMA (or the student without EMA).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from seedvr2.diffusion import NUM_TIMESTEPS, VelocityFn, add_noise, guided_velocity

from .config import TrainConfig
from .distributed import DistContext, unwrap, wrap
from .latents import clip_mean
from .losses import diffusion_mse
from .networks import build_trained_dit, frozen
from .optim import Metrics
from .stage import Batch, DiTStage, LatentBatch, Preview
from .trained import TrainedNetwork

log = logging.getLogger(__name__)


@torch.no_grad()
def copy_weights(target: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy parameters and buffers between identically built (and identically sharded) modules."""
    targets = (*target.parameters(), *target.buffers())
    for dst, src in zip(targets, (*source.parameters(), *source.buffers())):
        dst.copy_(src)


class DistillStage(DiTStage):
    """Student and frozen teacher, both starting from ``model.init`` (the diffusion model)."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        super().__init__(cfg, ctx)
        student = build_trained_dit(cfg.model.dit, cfg.model.init, "model.init", cfg.seed, 0,
                                    cfg.model.gradient_checkpointing, ctx.device)
        self.condition_resize = student.config.condition_resize
        self.build_text(student.config.vid_in_channels, student.config.vid_out_channels,
                        student.config.txt_in_dim)
        self.teacher = wrap(frozen(copy.deepcopy(student)), ctx, trainable=False)
        self.dit = TrainedNetwork("dit", student, cfg.optim, cfg.run, ctx, cfg.run.ema_decay)
        self.dit.register(self)
        self.networks["teacher"] = self.teacher
        self.model_configs = {"dit": student.config.to_dict(), "teacher": student.config.to_dict()}
        self.round = 0

    def teacher_steps(self) -> int:
        return self.cfg.distill.teacher_steps >> self.round

    def start_round(self, round_index: int) -> None:
        """The student's (EMA) weights become the teacher."""
        copy_weights(unwrap(self.teacher), unwrap(self.dit.averaged))
        self.round = round_index
        log.info("distillation round %d: teacher %d steps -> student %d", round_index + 1,
                 self.teacher_steps(), self.teacher_steps() // 2)

    def teacher_velocity(self, condition: torch.Tensor, batch: LatentBatch) -> VelocityFn:
        """The teacher's velocity, with CFG against the null text in round 1 only."""
        def positive(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.velocity(self.teacher, x_t, condition, batch, t)

        def negative(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            null = [self.text_bank.null] * len(batch.text)
            return self.velocity(self.teacher, x_t, condition, batch, t, text=null)

        scale = self.cfg.distill.first_round_cfg if self.round == 0 else 1.0
        return guided_velocity(positive, negative, scale)

    def euler_step(
        self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, s: torch.Tensor, batch: LatentBatch
    ) -> torch.Tensor:  # (l, c)
        """``x_s = x_t + (s - t)/T v`` per clip (the lerp Euler step)."""
        return x + self.per_row((s - t) / NUM_TIMESTEPS, batch)[:, None] * v

    def student_target(
        self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, batch: LatentBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:  # (l, c), (b,)
        """Velocity ``v*`` taking ``x_t`` to the teacher's two-step ``x_t''`` in one Euler step."""
        steps = self.teacher_steps() // 2
        t_mid, t_end = t - NUM_TIMESTEPS / (2 * steps), t - NUM_TIMESTEPS / steps
        with torch.no_grad():
            teacher = self.teacher_velocity(condition, batch)
            x_mid = self.euler_step(x_t, teacher(x_t, t), t, t_mid, batch)
            x_end = self.euler_step(x_mid, teacher(x_mid, t_mid), t_mid, t_end, batch)
            target = (x_t - x_end) * self.per_row(NUM_TIMESTEPS / (t - t_end), batch)[:, None]
        return target, t_end

    def loss(self, batch: LatentBatch) -> tuple[torch.Tensor, Metrics]:
        """Velocity MSE against the two-teacher-step target at a random student grid point."""
        steps = self.teacher_steps() // 2
        index = torch.floor(self.uniform(batch) * steps)  # (b,) student grid index
        t = (1 - index / steps) * NUM_TIMESTEPS
        noise = self.randn(batch)
        condition = self.condition(batch, self.cfg.distill.condition_noise)
        x_t = add_noise(batch.x0, noise, self.per_row(t, batch))
        target, _ = self.student_target(x_t, t, condition, batch)
        v = self.velocity(self.dit.module, x_t, condition, batch, t)
        loss = clip_mean(diffusion_mse, v, target, batch.shapes)
        return loss, {"loss": loss}

    def train_step(self, step: int, batches: list[Batch]) -> dict[str, float]:
        round_index = step // self.cfg.distill.round_steps
        if round_index != self.round:
            self.start_round(round_index)
        metrics = self.dit.step(step, [self.latents(b) for b in batches], self.loss)
        metrics["student_steps"] = float(self.teacher_steps() // 2)
        return metrics

    def preview(self, batch: Batch) -> Preview:
        return self.restore(self.dit.averaged, batch, self.teacher_steps() // 2)

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
