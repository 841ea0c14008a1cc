"""Fidelity stage: the one-step generator trained by L1 and squared errors alone, no discriminator.

The PSNR-oriented warm-up that ESRGAN and Real-ESRGAN run before their GAN stage, here for the
SeedVR2 one-step generator ``x̂ = z - F(z, c, T)``: its checkpoint (network ``generator``, as the
adversarial stage names it) starts the adversarial stage through ``model.init``. Without a
discriminator a step costs about a third of an adversarial one on a CPU.
"""

from __future__ import annotations

from functools import partial

import torch

from . import losses
from .config import TrainConfig
from .distributed import DistContext
from .latents import clip_mean
from .networks import freeze, starting_dit
from .optim import Metrics
from .stage import Batch, DiTStage, LatentBatch, Preview
from .trained import TrainedNetwork


class FidelityStage(DiTStage):
    """One-step generator, fitted to the HQ latents by ``w_1 L1 + w_2 MSE + w_3 10 log10 MSE
    + w_4 MSE / MSE(LQ latent)`` (each term a mean over clips)."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        super().__init__(cfg, ctx)
        generator = starting_dit(cfg.model.dit, cfg.model.init, "model.init", cfg.seed, 0)
        freeze(generator, cfg.model.frozen)
        generator.gradient_checkpointing = cfg.model.gradient_checkpointing
        self.start_noise = generator.config.start_noise
        self.condition_resize = generator.config.condition_resize
        self.build_text(generator.config.vid_in_channels, generator.config.vid_out_channels,
                        generator.config.txt_in_dim)
        self.generator = TrainedNetwork("generator", generator.to(ctx.device), cfg.optim,
                                        cfg.run, ctx, cfg.run.ema_decay, save_frozen=True)
        self.generator.register(self)
        self.model_configs = {"generator": generator.config.to_dict()}

    def loss(self, batch: LatentBatch) -> tuple[torch.Tensor, Metrics]:
        fid = self.cfg.fidelity
        condition = self.condition(batch, fid.condition_noise)
        fake = self.one_step(self.generator.module, batch, condition, self.start_noise)
        terms = {name: clip_mean(loss, fake, batch.x0, batch.shapes) for name, loss in
                 (("l1", losses.l1_loss), ("mse", losses.mse_loss),
                  ("log_mse", losses.log_mse_loss))}
        for name, loss, floor in (("relative_mse", losses.relative_mse_loss,
                                   fid.relative_mse_floor),
                                  ("excess_mse", losses.excess_mse_loss, fid.excess_mse_floor)):
            terms[name] = clip_mean(partial(loss, floor=floor), fake, batch.x0, batch.shapes,
                                    batch.lq)  # against the LQ latent: the pass-through output
        weights = {"l1": fid.l1_weight, "mse": fid.mse_weight, "log_mse": fid.log_mse_weight,
                   "relative_mse": fid.relative_mse_weight,
                   "excess_mse": fid.excess_mse_weight}
        total, logged = losses.weighted_sum(terms, weights)
        return total, {"g/loss": total, **{f"g/{k}": v for k, v in logged.items()}}

    def train_step(self, step: int, batches: list[Batch]) -> dict[str, float]:
        return self.generator.step(step, [self.latents(b) for b in batches], self.loss)

    def preview(self, batch: Batch) -> Preview:
        return self.restore(self.generator.averaged, batch, 1, self.start_noise)
