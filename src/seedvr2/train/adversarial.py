"""Stage 3: adversarial post-training of the one-step generator (APT; paper §3.3; spec §1c, §2).

Generator: the distilled student, always at ``t = T``: ``x̂ = z - F(z, c, T)``. Discriminator: a
copy of the *diffusion* DiT (``adversarial.discriminator_init``) with cross-attention heads,
judging ``x`` or ``x̂`` at a per-clip timestep ``t_D = shift(U(0, T), s)``. One step is the
BasicSR ESRGAN order: D frozen, G loss ``RpGAN + w_1 L1 + w_F L_F``, G step, EMA; D unfrozen,
D loss ``RpGAN + 1000 aR1 + 1000 aR2`` over one batched forward of ``x, x+σε, x̂, x̂+σε``,
D step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch

from seedvr2.diffusion import NUM_TIMESTEPS, model_input, shift_timesteps
from seedvr2.models.discriminator import (
    DiscriminatorConfig,
    DiscriminatorOutput,
    SeedVR2Discriminator,
)
from seedvr2.models.dit import SeedVR2DiT

from . import losses
from .config import TrainConfig
from .distributed import DistContext, unwrap
from .latents import clip_mean
from .networks import (
    adapt,
    adapter_record,
    base_dtype,
    freeze,
    seeded,
    set_trainable,
    shared_base_twin,
    starting_dit,
)
from .optim import Metrics
from .stage import Batch, DiTStage, LatentBatch, Preview
from .text import pack_text
from .trained import TrainedNetwork

StartDiT = Callable[[str | dict | None, str | None, str, int, int], SeedVR2DiT]  # starting_dit


def build_networks(
    cfg: TrainConfig, device: torch.device, start: StartDiT
) -> tuple[SeedVR2DiT, SeedVR2Discriminator]:
    """Generator and discriminator on ``device``, their DiTs made by ``start`` (loaded weights;
    the memory estimate passes structures on the meta device). With ``cfg.shares_base`` one
    frozen base carries both adapters (G's seeded as index 0, D's as 1: the same values as
    separate copies get)."""
    adv, lora, what = cfg.adversarial, cfg.model.lora, "adversarial.discriminator_init"
    generator = start(cfg.model.dit, cfg.model.init, "model.init", cfg.seed, 0)
    freeze(generator, cfg.model.frozen)
    if cfg.shares_base:
        generator.to(base_dtype(lora))  # before the twin: one converted copy
        backbone = shared_base_twin(generator)
    else:
        backbone = start(cfg.model.dit, adv.discriminator_init, what, cfg.seed, 1)
    if lora is not None:
        adapt(generator, lora, cfg.seed, 0, "generator")
        adapt(backbone, lora, cfg.seed, 1, "discriminator")
    for dit in (generator, backbone):
        dit.gradient_checkpointing = cfg.model.gradient_checkpointing
    heads = adv.head_blocks or DiscriminatorConfig.proportional(backbone.config.num_layers)
    d_config = DiscriminatorConfig(head_blocks=tuple(heads), head_heads=adv.head_heads)
    discriminator = seeded(cfg.seed, 2, lambda: SeedVR2Discriminator(backbone, d_config))
    return generator.to(device), discriminator.to(device)


class AdversarialStage(DiTStage):
    """One-step generator and APT discriminator."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        super().__init__(cfg, ctx)
        generator, discriminator = build_networks(cfg, ctx.device, starting_dit)
        self.start_noise = generator.config.start_noise  # x_T's scale (0: deterministic)
        self.condition_resize = generator.config.condition_resize
        self.build_text(generator.config.vid_in_channels, generator.config.vid_out_channels,
                        generator.config.txt_in_dim)
        backbone, d_config = discriminator.backbone, discriminator.config
        self.generator = TrainedNetwork("generator", generator, cfg.optim, cfg.run, ctx,
                                        cfg.run.ema_decay, save_frozen=cfg.model.lora is None)
        self.discriminator = TrainedNetwork("discriminator", discriminator,
                                            cfg.adversarial.disc_optim, cfg.run, ctx,
                                            ema_decay=None)
        self.generator.register(self)
        self.discriminator.register(self)
        self.model_configs = {
            "generator": generator.config.to_dict(),
            "discriminator": {"backbone": backbone.config.to_dict(), **asdict(d_config)},
        }
        if cfg.model.lora is not None:
            self.model_configs["generator_adapter"] = adapter_record(cfg.model.lora,
                                                                     cfg.model.init, "model.init")

    def generate(self, batch: LatentBatch, condition: torch.Tensor) -> torch.Tensor:  # (l, c)
        """``x̂ = z - F(z, c, T)`` with fresh per-clip noise (the one-step generator), scaled by
        the generator's ``start_noise`` (0: a deterministic generator)."""
        return self.one_step(self.generator.module, batch, condition, self.start_noise)

    def perturbed(self, rows: torch.Tensor, batch: LatentBatch) -> torch.Tensor:  # (l, c)
        """``x + σ ε`` in FP32, each clip's ε from its generator (spec §2 "numerical pitfalls")."""
        sigma, lengths = self.cfg.adversarial.sigma, batch.lengths
        return torch.cat([losses.perturb(x, sigma, g)
                          for x, g in zip(rows.split(lengths), batch.generators)])

    def disc_timesteps(self, batch: LatentBatch) -> torch.Tensor:  # (b,)
        """``t_D = T shift(u, s)``, ``u ~ U(0, 1)``, s for images or clips (APT)."""
        adv = self.cfg.adversarial
        shift = torch.tensor([adv.shift_image if k.frames == 1 else adv.shift_video
                              for k in batch.keys])
        return shift_timesteps(self.uniform(batch), shift) * NUM_TIMESTEPS

    def judge(
        self, discriminator: torch.nn.Module, clips: list[torch.Tensor], condition: torch.Tensor,
        batch: LatentBatch, t: torch.Tensor,
    ) -> DiscriminatorOutput:
        """D on several versions of the batch at once: logits (n b,), packed features."""
        n = len(clips)
        rows = torch.cat([model_input(x, condition) for x in clips])
        txt, txt_shape = pack_text(batch.text * n, self.ctx.device)
        return discriminator(rows, txt, batch.shapes.repeat(n, 1), txt_shape,
                             t.repeat(n).to(self.ctx.device))

    def generator_loss(self, batch: LatentBatch) -> tuple[torch.Tensor, Metrics]:
        """``RpGAN_G + w_1 L1 + w_F L_F`` (paper eq. 4); D's real branch without gradient."""
        adv = self.cfg.adversarial
        condition = self.condition(batch, adv.condition_noise)
        fake = self.generate(batch, condition)
        t_d = self.disc_timesteps(batch)
        discriminator = unwrap(self.discriminator.module)  # frozen: no DDP reduction
        with torch.no_grad():
            real_out = self.judge(discriminator, [batch.x0], condition, batch, t_d)
        fake_out = self.judge(discriminator, [fake], condition, batch, t_d)
        real_logits, fake_logits = real_out.logits.float(), fake_out.logits.float()
        if adv.gan_loss == "rpgan":
            gan = losses.rpgan_generator_loss(real_logits, fake_logits)
        else:
            gan = losses.nonsaturating_generator_loss(fake_logits)
        terms = {
            "gan": gan,
            "l1": clip_mean(losses.l1_loss, fake, batch.x0, batch.shapes),
            "mse": clip_mean(losses.mse_loss, fake, batch.x0, batch.shapes),
            "feature": losses.feature_matching_loss(fake_out.features, real_out.features),
        }
        weights = {"gan": 1.0, "l1": adv.l1_weight, "mse": adv.mse_weight,
                   "feature": adv.feature_weight}
        total, logged = losses.weighted_sum(terms, weights)
        return total, {"g/loss": total, **{f"g/{k}": v for k, v in logged.items()}}

    def discriminator_loss(self, batch: LatentBatch) -> tuple[torch.Tensor, Metrics]:
        """``RpGAN_D + λ_1 aR1 + λ_2 aR2`` (paper eq. 3), one shared ``t_D`` per clip."""
        adv = self.cfg.adversarial
        condition = self.condition(batch, adv.condition_noise)
        with torch.no_grad():
            fake = self.generate(batch, condition)
        t_d = self.disc_timesteps(batch)
        clips = [batch.x0, self.perturbed(batch.x0, batch), fake, self.perturbed(fake, batch)]
        out = self.judge(self.discriminator.module, clips, condition, batch, t_d)
        real, real_pert, fake_logits, fake_pert = out.logits.float().chunk(4)
        if adv.gan_loss == "rpgan":
            gan = losses.rpgan_discriminator_loss(real, fake_logits)
        else:
            gan = losses.nonsaturating_discriminator_loss(real, fake_logits)
        terms = {"gan": gan, "r1": losses.approximate_r1(real, real_pert),
                 "r2": losses.approximate_r2(fake_logits, fake_pert)}
        total, logged = losses.weighted_sum(
            terms, {"gan": 1.0, "r1": adv.r1_weight, "r2": adv.r2_weight})
        metrics = {f"d/{k}": v for k, v in logged.items()}
        return total, {"d/loss": total, **metrics,
                       "d/real_minus_fake": (real - fake_logits).mean().detach()}

    def generator_update(self, step: int, latents: list[LatentBatch]) -> dict[str, float]:
        """G step with D frozen (its parameters get no gradient; spec §2 "Generator step")."""
        d_params = self.discriminator.updater.params
        set_trainable(d_params, False)
        try:
            return self.generator.step(step, latents, self.generator_loss)
        finally:
            set_trainable(d_params, True)

    def train_step(self, step: int, batches: list[Batch]) -> dict[str, float]:
        latents = [self.latents(b) for b in batches]
        metrics = self.generator_update(step, latents)
        metrics.update(self.discriminator.step(step, latents, self.discriminator_loss))
        return metrics

    def preview(self, batch: Batch) -> Preview:
        return self.restore(self.generator.averaged, batch, 1, self.start_noise)
