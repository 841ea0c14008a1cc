"""VAE stage: train a causal video VAE of the released structure from scratch (L1 + small KL).

Our small bundled model needs a small VAE (spec §6 "Latents": 8x spatial, 4x temporal causal,
16 channels, "trained with L1 + small KL"). Per clip: ``z = mean + exp(logvar / 2) ε`` with ε from
the clip's generator, loss ``mean|D(z) - x| + kl_weight · KL(q(z|x) || N(0, I))``, the KL averaged
over latent elements.

Dimension key: ``b`` clips, ``c`` channels, ``f`` frames, ``t h w`` latent grid.
"""

from __future__ import annotations

import torch
from torch import nn

from seedvr2.models.vae import build_vae

from . import rng
from .config import TrainConfig
from .data import PixelBatch
from .distributed import DistContext, unwrap
from .losses import l1_loss
from .networks import load_weights, seeded
from .optim import Metrics, autocast
from .stage import Preview, Stage
from .trained import TrainedNetwork


class Autoencoder(nn.Module):
    """Encode, sample, decode as one ``forward`` (DDP and FSDP only see ``forward`` calls)."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(
        self,
        video: torch.Tensor,  # (b, 3, f, h, w) in [-1, 1]
        noise: torch.Tensor | None,  # (b, c, t, h', w'); None: decode the mean
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # reconstruction, mean, logvar
        posterior = self.vae.encode(video)
        z = posterior.mean
        if noise is not None:
            z = z + torch.exp(0.5 * posterior.logvar) * noise  # reparameterisation
        return self.vae.decode(z), posterior.mean, posterior.logvar


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:  # (b,)
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per clip, averaged over latent elements."""
    kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar)
    return kl.flatten(1).mean(1)


class VAEStage(Stage):
    """Reconstruction training of the VAE in ``latent.vae`` (``model.init`` to continue one)."""

    needs_lq = False

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        super().__init__(cfg, ctx)
        vae = seeded(cfg.seed, 0, lambda: build_vae(cfg.latent.vae))
        if cfg.model.init is not None:
            load_weights(vae, cfg.model.init, "model.init")
        self.config = vae.config
        self.net = TrainedNetwork("vae", Autoencoder(vae.to(ctx.device)), cfg.optim, cfg.run,
                                  ctx, cfg.run.ema_decay)
        # Checkpoints hold the VAE itself, so `latent.vae_checkpoint` loads it directly.
        self.networks["vae"] = unwrap(self.net.module).vae
        if self.net.ema_module is not None:
            self.networks["vae_ema"] = self.net.ema_module.vae
        self.updaters["vae"] = self.net.updater
        self.model_configs["vae"] = self.config.to_dict()

    @property
    def crop_multiple(self) -> int:
        return int(self.config.spatial_factor)

    @property
    def frame_step(self) -> int:
        return int(self.config.temporal_factor)

    def noise(self, batch: PixelBatch) -> torch.Tensor:  # (b, c, t, h', w')
        """Per-clip standard normal latents of the batch's latent shape."""
        f, h, w = batch.hq.shape[2:]
        shape = (self.config.latent_channels, (f - 1) // self.frame_step + 1,
                 h // self.crop_multiple, w // self.crop_multiple)
        noise = [torch.randn(shape, generator=rng.generator(self.cfg.seed, "noise", k.step,
                                                            k.micro, k.index))
                 for k in batch.keys]
        return torch.stack(noise).to(self.ctx.device)

    def loss(self, batch: PixelBatch) -> tuple[torch.Tensor, Metrics]:
        video = batch.hq.to(self.ctx.device)
        reconstruction, mean, logvar = self.net.module(video, self.noise(batch))
        l1 = torch.stack([l1_loss(r, v) for r, v in zip(reconstruction, video)]).mean()
        kl = gaussian_kl(mean.float(), logvar.float()).mean()
        loss = l1 + self.cfg.vae.kl_weight * kl
        return loss, {"loss": loss, "l1": l1, "kl": kl}

    def train_step(self, step: int, batches: list[PixelBatch]) -> dict[str, float]:
        return self.net.step(step, batches, self.loss)

    @torch.no_grad()
    def preview(self, batch: PixelBatch) -> Preview:
        with autocast(self.cfg.run, self.ctx.device):
            reconstruction, _, _ = self.net.averaged(batch.hq.to(self.ctx.device), None)
        return None, reconstruction.float().clamp(-1, 1), batch.hq
