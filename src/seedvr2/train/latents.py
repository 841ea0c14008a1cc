"""Pixels to latents and back for training, and packing latents into the DiT's token rows.

Two codecs: the causal video VAE (spec §1a "Condition": LQ resized to the output size, then
encoded, scaled by 0.9152), or a fixed pixel-unshuffle "latent" for quick small runs (spec §6
"Latents": space-to-depth, 3 f² channels, no temporal compression).

Dimension key: ``b`` clips, ``c`` channels, ``f`` frames, ``t h w`` latent grid, ``l`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from einops import rearrange
from torch import nn

from seedvr2.errors import ConfigError

from .config import LatentConfig


class Codec(Protocol):
    """What the stages need of a latent space."""

    channels: int  # latent channels c
    spatial: int  # pixels per latent cell along h and w
    temporal: int  # frames per latent frame after the first (causal: f = (t - 1) * temporal + 1)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(b, 3, f, h, w) in [-1, 1] -> (b, c, t, h', w')."""
        ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(b, c, t, h', w') -> (b, 3, f, h, w) in about [-1, 1]."""
        ...


class PixelUnshuffleCodec:
    """Space-to-depth by ``factor``: exact, parameter-free, 3 factor² channels."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.channels = 3 * factor * factor
        self.spatial = factor
        self.temporal = 1

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return rearrange(video, "b c f (h p) (w q) -> b (c p q) f h w", p=f, q=f)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return rearrange(latent, "b (c p q) f h w -> b c f (h p) (w q)", p=f, q=f)


class VAECodec:
    """A frozen VAE; the diffusion latent is ``(posterior mean - shift) * scale`` (spec §1a)."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        self.scale, self.shift = float(config.scaling_factor), float(config.shifting_factor)
        self.channels = int(config.latent_channels)
        self.spatial = int(config.spatial_factor)
        self.temporal = int(config.temporal_factor)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return (self.vae.encode(video).mean - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scale + self.shift)


def build_codec(cfg: LatentConfig, device: torch.device) -> Codec:
    """The codec a run's ``latent`` section describes, on ``device``."""
    if cfg.kind == "pixel_unshuffle":
        return PixelUnshuffleCodec(cfg.factor)
    from seedvr2.models.vae import build_vae

    from .networks import load_weights, weights_file

    what = "latent.vae_checkpoint"
    if cfg.vae is None:  # the structure of the weights file (validated: a checkpoint is given)
        file = weights_file(cfg.vae_checkpoint, "vae", what)
        if file is None:
            raise ConfigError(f"latent.vae: null takes the structure from a weights file or "
                              f"model; {cfg.vae_checkpoint} is a training checkpoint")
        from seedvr2.weights.networks import load_vae

        return VAECodec(load_vae(file, torch.float32, device))
    vae = build_vae(cfg.vae)
    if cfg.vae_checkpoint is not None:
        load_weights(vae, cfg.vae_checkpoint, what, role="vae")
    return VAECodec(vae.to(device))


def check_codec_fits(codec: Codec, vid_in: int, vid_out: int) -> None:
    """The DiT must read ``[x_t | LQ | mask]`` = 2c + 1 channels and predict c."""
    if (vid_in, vid_out) != (2 * codec.channels + 1, codec.channels):
        raise ConfigError(
            f"model.dit: a {codec.channels}-channel latent needs vid_in_channels "
            f"{2 * codec.channels + 1} and vid_out_channels {codec.channels}, "
            f"got {vid_in} / {vid_out}"
        )


def pack(clips: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips [(c, t, h, w)] (or stacked, (b, c, t, h, w)) to rows (l, c) and shapes (b, 3)."""
    rows = torch.cat([rearrange(x, "c t h w -> (t h w) c") for x in clips])
    return rows, torch.tensor([list(x.shape[1:]) for x in clips])


def unpack(rows: torch.Tensor, shapes: torch.Tensor) -> list[torch.Tensor]:  # [(c, t, h, w)]
    """Inverse of :func:`pack`, clip by clip (clips may differ in shape)."""
    clips = rows.split(shapes.prod(-1).tolist())
    return [
        rearrange(x, "(t h w) c -> c t h w", t=t, h=h, w=w)
        for x, (t, h, w) in zip(clips, shapes.tolist())
    ]


def clip_mean(
    loss: Callable[..., torch.Tensor],
    prediction: torch.Tensor,  # (l, c) packed rows
    target: torch.Tensor,  # (l, c)
    shapes: torch.Tensor,  # (b, 3)
    *more: torch.Tensor,  # (l, c) further packed rows ``loss`` takes after the target
) -> torch.Tensor:  # ()
    """``loss`` of each clip, averaged over clips.

    Every clip weighs the same whatever its size, so the mean over a DDP rank's clips averaged
    over ranks equals one process's mean over all clips (and cached clips of several sizes mix).
    """
    lengths = shapes.prod(-1).tolist()
    clips = zip(*(rows.split(lengths) for rows in (prediction, target, *more)))
    return torch.stack([loss(*parts) for parts in clips]).mean()


