"""What every stage shares: the stage interface, latents of a batch, per-clip randomness.

A stage owns its networks (wrapped for DDP/FSDP), their :class:`~seedvr2.train.optim.Updater`\\ s
and EMA, takes one optimiser step per call of :meth:`Stage.train_step`, and restores outputs for
previews. :class:`DiTStage` adds what the three diffusion-transformer stages share: the codec,
the text embeddings, packing and the DiT call on packed ``[x_t | LQ | mask]`` rows.

Dimension key: ``b`` clips, ``l`` packed latent rows, ``c`` latent channels.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seedvr2.diffusion import (
    NUM_TIMESTEPS,
    euler_sample,
    model_input,
    predict_clean,
    resolution_timestep_shift,
    sr_condition,
    uniform_trailing_timesteps,
)
from seedvr2.models.dit.config import ConditionResize

from . import rng
from .config import PASSTHROUGH, TrainConfig
from .data import PixelBatch, SampleKey
from .distributed import DistContext
from .latent_cache import LatentItems
from .latents import build_codec, check_codec_fits, pack, unpack
from .networks import model_source
from .optim import Updater, autocast
from .text import TextBank, pack_text

Batch = PixelBatch | LatentItems  # decoded media, or cached latents
Preview = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]  # LQ, output, HQ (b, 3, f, h, w)


class Stage(ABC):
    """One training stage."""

    needs_lq: bool = True  # whether batches need LQ conditions (the VAE stage does not)
    # How LQ frames are up-scaled into conditions: the trained DiT's config says (DiT stages set
    # it from their network's DiTConfig.condition_resize).
    condition_resize: ConditionResize = "bicubic_antialias"

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.networks: dict[str, nn.Module] = {}  # everything checkpointed, by name
        self.updaters: dict[str, Updater] = {}  # optimisers checkpointed, by name
        self.model_configs: dict[str, dict[str, Any]] = {}  # resolved network configs, by name
        # Networks checkpointed in part (LoRA: the adapters; the frozen base comes from its
        # starting weights again on resume): name -> the state-dict keys kept.
        self.saved_keys: dict[str, frozenset[str]] = {}

    @property
    @abstractmethod
    def crop_multiple(self) -> int:
        """Crop heights and widths must be multiples of this."""

    @property
    @abstractmethod
    def frame_step(self) -> int:
        """Clip lengths must be ``1 + k * frame_step`` (4 for the causal VAE)."""

    @abstractmethod
    def train_step(self, step: int, batches: list[Batch]) -> dict[str, float]:
        """One optimiser step (per network) over the micro-batches; returns scalars to log."""

    @abstractmethod
    def preview(self, batch: Batch) -> Preview:
        """LQ, output and HQ pixels in [-1, 1] of a batch restored with the EMA weights."""

    def state_dict(self) -> dict[str, Any]:
        """Stage progress that is not a network or optimiser (for checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


@dataclass
class LatentBatch:
    """A micro-batch in latent space, on the device."""

    x0: torch.Tensor  # (l, c) HQ latents
    lq: torch.Tensor  # (l, c) LQ latents (clean; condition noise is added per stage)
    shapes: torch.Tensor  # (b, 3) latent (t, h, w), on the CPU
    text: list[torch.Tensor]  # per clip (l_txt, d), after text dropping
    keys: list[SampleKey]
    generators: list[torch.Generator]  # per clip, CPU: the noise stream of this sample

    @property
    def lengths(self) -> list[int]:
        return self.shapes.prod(-1).tolist()

    def vae_shapes(self, codec_spatial: int, codec_temporal: int) -> list[tuple[int, int, int]]:
        """Each clip's shape in the released VAE's latent grid (what the timestep shift reads)."""
        out = []
        for t, h, w in self.shapes.tolist():
            frames = (t - 1) * codec_temporal + 1
            out.append(((frames - 1) // 4 + 1, h * codec_spatial // 8, w * codec_spatial // 8))
        return out


class DiTStage(Stage):
    """Shared parts of the diffusion, distillation and adversarial stages."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        super().__init__(cfg, ctx)
        self.codec = build_codec(cfg.latent, ctx.device)
        self.text_bank: TextBank | None = None  # set by build_text once the DiT width is known

    def build_text(self, vid_in: int, vid_out: int, txt_in_dim: int) -> None:
        """Check the codec fits the DiT; the texts: ``text.path``, else the prompt embedding of
        the model ``model.init`` names (fine-tuning keeps its prompt), else a seeded one."""
        check_codec_fits(self.codec, vid_in, vid_out)
        text, init = self.cfg.text, self.cfg.model.init
        starts_from_files = text.path is None and init not in (None, PASSTHROUGH)
        files = model_source(init, "model.init") if starts_from_files else None
        if files is not None and files.pos_emb is not None:
            text = dataclasses.replace(text, path=str(files.pos_emb))
        self.text_bank = TextBank(text, txt_in_dim, self.cfg.seed)

    @property
    def crop_multiple(self) -> int:
        return self.codec.spatial * 2  # the DiT's 2x2 patches

    @property
    def frame_step(self) -> int:
        return self.codec.temporal

    def clip_generators(self, keys: list[SampleKey]) -> list[torch.Generator]:
        return [rng.generator(self.cfg.seed, "noise", k.step, k.micro, k.index) for k in keys]

    def latents(self, batch: Batch, training: bool = True) -> LatentBatch:
        """Encode HQ and LQ (frozen codec; cached batches are latents already), pick each
        clip's text (dropped to the null text only when ``training``), make its generator."""
        device = self.ctx.device
        if isinstance(batch, LatentItems):
            x0, shapes = pack(batch.x0)
            lq, _ = pack(batch.lq)
        else:
            with autocast(self.cfg.run, device):
                x0, shapes = pack(self.codec.encode(batch.hq.to(device)))
                lq, _ = pack(self.codec.encode(batch.lq.to(device)))
        generators = self.clip_generators(batch.keys)
        text = self.text_bank.select(batch.text, generators if training else None)
        return LatentBatch(x0.to(device).float(), lq.to(device).float(), shapes, text, batch.keys,
                           generators)

    def decode(self, rows: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
        """Packed latents of same-shape clips to pixels (b, 3, f, h, w) in [-1, 1]."""
        with autocast(self.cfg.run, self.ctx.device):
            clips = torch.stack(unpack(rows, shapes))
            return self.codec.decode(clips).float().clamp(-1, 1)

    def randn(self, batch: LatentBatch) -> torch.Tensor:  # (l, c)
        """Standard normal rows, each clip from its own generator (then moved to the device)."""
        c = batch.x0.shape[1]
        noise = [torch.randn(n, c, generator=g) for n, g in zip(batch.lengths, batch.generators)]
        return torch.cat(noise).to(self.ctx.device)

    def uniform(self, batch: LatentBatch) -> torch.Tensor:  # (b,)
        """One U(0, 1) draw per clip."""
        return torch.stack([torch.rand((), generator=g) for g in batch.generators])

    def per_row(self, values: torch.Tensor, batch: LatentBatch) -> torch.Tensor:  # (l,)
        """Per-clip values (b,) repeated over each clip's rows."""
        lengths = torch.tensor(batch.lengths, device=self.ctx.device)
        return values.to(self.ctx.device).repeat_interleave(lengths)

    def shifted(self, t: torch.Tensor, batch: LatentBatch) -> torch.Tensor:  # (b,)
        """Per-clip resolution-dependent timestep shift (spec §1a)."""
        shapes = batch.vae_shapes(self.codec.spatial, self.codec.temporal)
        return torch.stack([resolution_timestep_shift(ti, s) for ti, s in zip(t, shapes)])

    def condition(self, batch: LatentBatch, noise_scale: float) -> torch.Tensor:  # (l, c + 1)
        """``[LQ latent | 1]``, each clip noised at a level drawn in [0, noise_scale] (SeedVR)."""
        if noise_scale == 0:
            return sr_condition(batch.lq)
        levels = self.uniform(batch) * noise_scale
        aug = self.randn(batch)
        shapes = batch.vae_shapes(self.codec.spatial, self.codec.temporal)
        parts = zip(batch.lq.split(batch.lengths), aug.split(batch.lengths), levels, shapes)
        return torch.cat([
            sr_condition(lq, float(level), noise, latent_shape=shape)
            for lq, noise, level, shape in parts
        ])

    def velocity(
        self,
        model: nn.Module,
        x_t: torch.Tensor,  # (l, c)
        condition: torch.Tensor,  # (l, c + 1)
        batch: LatentBatch,
        t: torch.Tensor,  # (b,) or scalar, in [0, 1000]
        text: list[torch.Tensor] | None = None,  # per clip; default the batch's
    ) -> torch.Tensor:  # (l, c) in fp32
        """Run a DiT (or anything with its signature) on packed rows."""
        txt, txt_shape = pack_text(batch.text if text is None else text, self.ctx.device)
        t = torch.as_tensor(t, dtype=torch.float32, device=self.ctx.device)
        return model(model_input(x_t, condition), txt, batch.shapes, txt_shape, t).float()

    def one_step(
        self, model: nn.Module, batch: LatentBatch, condition: torch.Tensor, start_noise: float
    ) -> torch.Tensor:  # (l, c)
        """The one-step generator ``x̂ = z - F(z, c, T)``, ``z`` fresh per-clip noise scaled by
        ``start_noise`` (0: a deterministic generator)."""
        noise = self.randn(batch) * start_noise
        t = torch.full((len(batch.keys),), NUM_TIMESTEPS)
        v = self.velocity(model, noise, condition, batch, t)
        return predict_clean(noise, v, NUM_TIMESTEPS)

    @torch.no_grad()
    def restore(
        self, model: nn.Module, batch: Batch, steps: int, start_noise: float = 1.0
    ) -> Preview:
        """Euler-sample ``steps`` uniform trailing steps from noise scaled by ``start_noise``
        and decode (previews)."""
        latents = self.latents(batch, training=False)
        latents.generators = [
            rng.generator(self.cfg.seed, "sample", k.index) for k in latents.keys
        ]
        condition = self.condition(latents, 0.0)

        def predict_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.velocity(model, x_t, condition, latents, t)

        with autocast(self.cfg.run, self.ctx.device):
            x_t = self.randn(latents) * start_noise
            x0 = euler_sample(predict_v, x_t, uniform_trailing_timesteps(steps))
        output = self.decode(x0.float(), latents.shapes)
        if isinstance(batch, PixelBatch):
            return batch.lq, output, batch.hq
        shapes = latents.shapes
        return self.decode(latents.lq, shapes), output, self.decode(latents.x0, shapes)
