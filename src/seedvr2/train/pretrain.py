"""Stage 1: diffusion training of the restoration DiT (SeedVR; spec §1a).

Per clip: ``z ~ N(0, I)``, ``t = T sigmoid(n)`` with ``n ~ N(loc, scale²)`` (logit-normal), shifted
by the clip's resolution; the LQ latent is noised at a random level in ``[0, condition_noise]``;
``x_t = (1 - t/T) x_0 + (t/T) z`` and the loss is ``MSE(F(x_t, c, t), z - x_0)``, averaged per clip
then over clips.
"""

from __future__ import annotations

import torch

from seedvr2.diffusion import add_noise, logit_normal_timesteps, velocity_target

from .config import TrainConfig
from .distributed import DistContext
from .latents import clip_mean
from .losses import diffusion_mse
from .networks import adapter_record, build_trained_dit
from .optim import Metrics
from .stage import Batch, DiTStage, LatentBatch, Preview
from .trained import TrainedNetwork


class DiffusionStage(DiTStage):
    """v-prediction on the lerp schedule with the SR condition."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        super().__init__(cfg, ctx)
        dit = build_trained_dit(cfg.model.dit, cfg.model.init, "model.init", cfg.seed, 0,
                                cfg.model.gradient_checkpointing, ctx.device, cfg.model.lora,
                                "dit")
        self.condition_resize = dit.config.condition_resize
        self.build_text(dit.config.vid_in_channels, dit.config.vid_out_channels,
                        dit.config.txt_in_dim)
        self.dit = TrainedNetwork("dit", dit, cfg.optim, cfg.run, ctx, cfg.run.ema_decay)
        self.dit.register(self)
        self.model_configs["dit"] = dit.config.to_dict()
        if cfg.model.lora is not None:
            self.model_configs["dit_adapter"] = adapter_record(cfg.model.lora, cfg.model.init,
                                                               "model.init")

    def timesteps(self, batch: LatentBatch) -> torch.Tensor:  # (b,)
        """Logit-normal draws, shifted by each clip's size when enabled."""
        d = self.cfg.diffusion
        t = torch.cat([logit_normal_timesteps(1, g, d.timestep_loc, d.timestep_scale)
                       for g in batch.generators])
        return self.shifted(t, batch) if d.resolution_shift else t

    def loss(self, batch: LatentBatch) -> tuple[torch.Tensor, Metrics]:
        """``MSE(F(x_t, c, t), z - x_0)`` per clip, averaged over clips."""
        t = self.timesteps(batch)
        noise = self.randn(batch)
        condition = self.condition(batch, self.cfg.diffusion.condition_noise)
        x_t = add_noise(batch.x0, noise, self.per_row(t, batch))
        v = self.velocity(self.dit.module, x_t, condition, batch, t)
        loss = clip_mean(diffusion_mse, v, velocity_target(batch.x0, noise), batch.shapes)
        return loss, {"loss": loss}

    def train_step(self, step: int, batches: list[Batch]) -> dict[str, float]:
        return self.dit.step(step, [self.latents(b) for b in batches], self.loss)

    def preview(self, batch: Batch) -> Preview:
        return self.restore(self.dit.averaged, batch, self.cfg.run.sample_steps)
