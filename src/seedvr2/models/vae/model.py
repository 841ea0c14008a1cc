"""The causal video VAE: encoder, decoder, posterior and the public encode/decode API (spec §5).

Memory stays bounded on long, large clips in two ways, both optional per call:

* temporal chunks (``temporal_chunk`` video frames after the first; the official slicing): causal
  convs carry their last input frames from chunk to chunk, so the result equals the whole-clip one;
* spatial tiles (:class:`TileSpec`), blended linearly across overlaps; approximate near seams.

Dimension key: ``b`` batch, ``c`` channels, ``t`` latent frames, ``f`` video frames, ``h w`` latent
rows and columns, ``H W`` pixel rows and columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from seedvr2.errors import InputError

from .blocks import DownBlock, Downsample, FrameGroupNorm, MidBlock, UpBlock, Upsample
from .causal import CausalCache, CausalConv3d, run_in_chunks
from .config import VAEConfig, resolve_vae_config
from .sequence_parallel import TimeSplit
from .tiling import TileSpec, tile_spans, tiled_map

Net = Callable[[torch.Tensor, CausalCache | None], torch.Tensor]

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers DiagonalGaussianDistribution clamp


class Posterior(NamedTuple):
    """Diagonal Gaussian over the (unscaled) latent."""

    mean: torch.Tensor  # (b, c, t, h, w), or (b, c, h, w) for an image
    logvar: torch.Tensor  # same shape, clamped to LOGVAR_RANGE

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mean + std * noise``; the global RNG when ``generator`` is None (as the official)."""
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise


class Encoder(nn.Module):
    """Video (b, 3, f, H, W) -> posterior moments (b, 2 * latent, t, h, w)."""

    def __init__(self, config: VAEConfig, **factory) -> None:
        super().__init__()
        ch, groups, eps = config.block_channels, config.norm_groups, config.norm_eps
        last = len(ch) - 1
        self.conv_in = CausalConv3d(config.in_channels, ch[0], 3, **factory)
        self.down_blocks = nn.ModuleList()
        for i, out in enumerate(ch):
            # Every block but the last halves H and W; the last `temporal_stages` of them halve T.
            temporal = i >= last - config.temporal_stages
            down = Downsample(out, temporal, **factory) if i < last else None
            self.down_blocks.append(DownBlock(
                ch[max(i - 1, 0)], out, config.layers_per_block, groups, eps, down, **factory
            ))
        self.mid_block = MidBlock(ch[-1], groups, eps, **factory)
        self.conv_norm_out = FrameGroupNorm(groups, ch[-1], eps, **factory)
        self.conv_out = CausalConv3d(ch[-1], 2 * config.latent_channels, 3, **factory)

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = self.conv_in(x, cache)  # (b, c, f, H, W)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache)  # (b, c, t, h, w)
        x = F.silu(self.conv_norm_out(x), inplace=True)
        return self.conv_out(x, cache)  # (b, 2 * latent, t, h, w)


class Decoder(nn.Module):
    """Latent (b, latent, t, h, w) -> video (b, 3, f, H, W)."""

    def __init__(self, config: VAEConfig, **factory) -> None:
        super().__init__()
        ch, groups, eps = config.block_channels[::-1], config.norm_groups, config.norm_eps
        last = len(ch) - 1
        self.conv_in = CausalConv3d(config.latent_channels, ch[0], 3, **factory)
        self.mid_block = MidBlock(ch[0], groups, eps, **factory)
        self.up_blocks = nn.ModuleList()
        for i, out in enumerate(ch):
            # Every block but the last doubles H and W; the first `temporal_stages` double T.
            up = Upsample(out, i < config.temporal_stages, **factory) if i < last else None
            self.up_blocks.append(UpBlock(
                ch[max(i - 1, 0)], out, config.layers_per_block + 1, groups, eps, up, **factory
            ))
        self.conv_norm_out = FrameGroupNorm(groups, ch[-1], eps, **factory)
        self.conv_out = CausalConv3d(ch[-1], config.out_channels, 3, **factory)

    def forward(self, z: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z, cache), cache)  # (b, c, t, h, w)
        for block in self.up_blocks:
            x = block(x, cache)
        x = F.silu(self.conv_norm_out(x), inplace=True)
        return self.conv_out(x, cache)  # (b, 3, f, H, W)


def _in_time_chunks(net: Net, x: torch.Tensor, chunk: int, split: TimeSplit | None) -> torch.Tensor:
    """``net`` on frame 0 plus ``chunk`` frames, then on ``chunk`` frames at a time; 0 = at once.

    With ``split``, the chunks are shared among processes (see :mod:`.sequence_parallel`).
    """
    if chunk == 0 or x.shape[2] <= 1 + chunk:
        return net(x, None)
    chunks = [x[:, :, : 1 + chunk], *x[:, :, 1 + chunk :].split(chunk, dim=2)]
    return run_in_chunks(net, chunks) if split is None else split.run(net, chunks)


def _space_to_depth_posterior(x: torch.Tensor, stages: int, image: bool) -> Posterior:
    """(b, c, t, H, W) -> the posterior of an exact space-to-depth VAE: ``stages`` 2x pixel
    unshuffles (channel order (c, p, q) each), log-variance at its lower clamp."""
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    for _ in range(stages):
        frames = F.pixel_unshuffle(frames, 2)
    mean = rearrange(frames, "(b t) c h w -> b c t h w", b=x.shape[0])
    logvar = torch.full_like(mean, LOGVAR_RANGE[0])
    if image:
        return Posterior(mean.squeeze(2), logvar.squeeze(2))
    return Posterior(mean, logvar)


def _depth_to_space(z: torch.Tensor, stages: int) -> torch.Tensor:
    """Inverse of :func:`_space_to_depth_posterior`'s mean: (b, c, t, h, w) -> video."""
    frames = rearrange(z, "b c t h w -> (b t) c h w")
    for _ in range(stages):
        frames = F.pixel_shuffle(frames, 2)
    return rearrange(frames, "(b t) c h w -> b c t h w", b=z.shape[0])


class VideoAutoencoder(nn.Module):
    """The SeedVR2 causal video VAE (official ``VideoAutoencoderKLWrapper``, inference part).

    ``encode`` maps video in [-1, 1] to the posterior of the unscaled latent ``z``; ``decode`` maps
    ``z`` back. The diffusion latent is ``(z - shifting_factor) * scaling_factor`` (config fields).
    """

    def __init__(
        self,
        config: VAEConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, device=device, dtype=dtype)
        self.decoder = Decoder(config, device=device, dtype=dtype)
        self.time_split: TimeSplit | None = None  # set: temporal chunks split over processes
        # Set (to the number of 2x stages) when the weights are an exact space-to-depth
        # (:func:`~seedvr2.models.vae.space_to_depth.recognise_space_to_depth`): encode and
        # decode then compute the pixel (un)shuffle directly, to float rounding the same values.
        self.space_to_depth_stages: int | None = None

    def encode(
        self,
        video: torch.Tensor,  # (b, 3, 1 + 4n, H, W) or an image (b, 3, H, W)
        *,
        temporal_chunk: int | None = None,
        tile: TileSpec | None = None,
    ) -> Posterior:  # (b, 16, 1 + n, H/8, W/8), or (b, 16, H/8, W/8) for an image
        """Encode video (or an image) in [-1, 1] to the Gaussian posterior of its latent.

        Args:
            video: frames in [-1, 1]; H and W multiples of the spatial factor (8).
            temporal_chunk: video frames per chunk after the first, a multiple of the temporal
                factor (4); None takes ``config.temporal_chunk``; 0 encodes the clip at once.
                The result does not depend on it (up to float rounding).
            tile: spatial tiles in video pixels; None encodes whole frames.
        """
        x, image = self._check(video, self.config.in_channels, self.config.temporal_factor,
                               self.config.spatial_factor, "video")
        x = x.to(self.encoder.conv_in.weight.dtype)
        chunk = self._chunk(temporal_chunk)
        if self.space_to_depth_stages is not None:
            return _space_to_depth_posterior(x, self.space_to_depth_stages, image)
        moments = self._tiled(
            lambda v: _in_time_chunks(self.encoder, v, chunk, self.time_split), x, tile,
            in_scale=self.config.spatial_factor, out_scale=1,
        )  # (b, 2 * latent, t, h, w)
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(*LOGVAR_RANGE)
        if image:
            return Posterior(mean.squeeze(2), logvar.squeeze(2))
        return Posterior(mean, logvar)

    def decode(
        self,
        latent: torch.Tensor,  # (b, 16, t, h, w) or an image latent (b, 16, h, w)
        *,
        temporal_chunk: int | None = None,
        tile: TileSpec | None = None,
    ) -> torch.Tensor:  # (b, 3, 1 + 4(t - 1), 8h, 8w), or (b, 3, 8h, 8w) for an image latent
        """Decode the unscaled latent ``z`` to video (not clamped; may leave [-1, 1]).

        Args:
            latent: ``z``, i.e. the diffusion latent / scaling_factor + shifting_factor.
            temporal_chunk: video frames per chunk after the first, as for :meth:`encode`
                (chunks hold ``temporal_chunk / 4`` latent frames).
            tile: spatial tiles in pixels of the decoded video; None decodes whole frames.
        """
        z, image = self._check(latent, self.config.latent_channels, 1, 1, "latent")
        z = z.to(self.decoder.conv_in.weight.dtype)
        chunk = self._chunk(temporal_chunk) // self.config.temporal_factor
        if self.space_to_depth_stages is not None:
            video = _depth_to_space(z, self.space_to_depth_stages)
            return video.squeeze(2) if image else video
        video = self._tiled(
            lambda v: _in_time_chunks(self.decoder, v, chunk, self.time_split), z, tile,
            in_scale=1, out_scale=self.config.spatial_factor,
        )
        return video.squeeze(2) if image else video

    def network_calls(
        self,
        latent_shape: tuple[int, int, int],  # (t, h, w) of the latent
        *,
        decode: bool,
        temporal_chunk: int | None = None,
        tile: TileSpec | None = None,
    ) -> int:
        """How many times :meth:`encode` or :meth:`decode` runs its network on a clip of this
        latent shape: spatial tiles x temporal chunks."""
        t, h, w = latent_shape
        frames = (t - 1) * self.config.temporal_factor + 1
        chunk = self._chunk(temporal_chunk)
        chunk = chunk // self.config.temporal_factor if decode else chunk
        length = t if decode else frames
        chunks = 1 if chunk == 0 or length <= 1 + chunk else 1 + -(-(length - 1 - chunk) // chunk)
        if tile is None:
            return chunks
        size, overlap = tile.in_cells(self.config.spatial_factor)
        rows, cols = (len(tile_spans(n, size[a], overlap[a])) for a, n in enumerate((h, w)))
        return chunks * rows * cols

    def _check(
        self, x: torch.Tensor, channels: int, time_factor: int, space_factor: int, name: str
    ) -> tuple[torch.Tensor, bool]:
        """Validate a 4-D/5-D input; returns it 5-D and whether it was 4-D."""
        received = f"{tuple(x.shape)} {x.dtype}"
        image = x.ndim == 4
        if image:
            x = x.unsqueeze(2)
        if (
            x.ndim != 5
            or not x.is_floating_point()
            or x.shape[1] != channels
            or (x.shape[2] - 1) % time_factor
            or x.shape[-2] % space_factor
            or x.shape[-1] % space_factor
            or 0 in x.shape
        ):
            frames = "T" if time_factor == 1 else f"1 + {time_factor}n"
            sizes = f" with H and W multiples of {space_factor}" if space_factor > 1 else ""
            raise InputError(
                f"{name} must be a float tensor (B, {channels}, {frames}, H, W) or (B, {channels}, "
                f"H, W){sizes}; received {received}"
            )
        return x, image

    def _chunk(self, temporal_chunk: int | None) -> int:
        chunk = self.config.temporal_chunk if temporal_chunk is None else temporal_chunk
        factor = self.config.temporal_factor
        if chunk < 0 or chunk % factor:
            raise InputError(
                f"temporal_chunk must be 0 (whole clip) or a positive multiple of {factor} video "
                f"frames; received {chunk}"
            )
        return chunk

    def _tiled(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        tile: TileSpec | None,
        in_scale: int,
        out_scale: int,
    ) -> torch.Tensor:
        if tile is None:
            return fn(x)
        size, overlap = tile.in_cells(self.config.spatial_factor)
        return tiled_map(fn, x, size, overlap, in_scale, out_scale)


def build_vae(
    config: str | dict | VAEConfig | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> VideoAutoencoder:
    """Build the VAE from a preset name (``released``, ``tiny``), official arguments or a config.

    ``None`` is the released VAE; ``device="meta"`` builds it without allocating weights.
    """
    return VideoAutoencoder(resolve_vae_config(config), device=device, dtype=dtype)
