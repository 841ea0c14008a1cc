"""Blocks of the causal video VAE: per-frame norm, attention, resnets, resamplers (spec §5.2-5.3).

Attribute names are those of the released checkpoint (``resnets``, ``downsamplers.0.conv``,
``upsamplers.0.upscale_conv``, ``attentions.0.to_out.0``, ...).

Dimension key: ``b`` batch, ``c`` channels, ``t`` frames, ``h w`` rows and columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .causal import CausalCache, CausalConv3d, ChunkPhase

QUERY_CHUNK = 4096  # frame positions attended to at once by the mid blocks' attention


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame (never across time): time is folded into the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, t, h, w) -> same
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        return rearrange(super().forward(frames), "(b t) c h w -> b c t h w", t=x.shape[2])


class ResnetBlock(nn.Module):
    """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))`` with a 1x1x1 shortcut if widths differ."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float,
                 **factory) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels, eps, **factory)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, **factory)
        self.norm2 = FrameGroupNorm(groups, out_channels, eps, **factory)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, **factory)
        self.conv_shortcut = (
            nn.Conv3d(in_channels, out_channels, 1, **factory)
            if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        # (b, c, t, h, w) -> (b, c', t, h, w)
        h = self.conv1(F.silu(self.norm1(x), inplace=True), cache)
        h = self.conv2(F.silu(self.norm2(h), inplace=True), cache)
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return h.add_(skip)


class FrameAttention(nn.Module):
    """Single-head self-attention over the positions of each frame, with a residual (spec §5.3)."""

    def __init__(self, channels: int, groups: int, eps: float, **factory) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps, **factory)
        self.to_q = nn.Linear(channels, channels, **factory)
        self.to_k = nn.Linear(channels, channels, **factory)
        self.to_v = nn.Linear(channels, channels, **factory)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels, **factory)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, t, h, w) -> same
        b, _, t, h, w = x.shape
        y = self.group_norm(rearrange(x, "b c t h w -> (b t) c h w"))
        y = rearrange(y, "f c h w -> f 1 (h w) c")  # one head; 4-D selects fused SDPA kernels
        q, k, v = self.to_q(y), self.to_k(y), self.to_v(y)
        # Frame by frame and QUERY_CHUNK positions at a time: the same result, less memory, and
        # no single call long enough (minutes on a CPU for large frames) to delay an interrupt.
        y = torch.cat([
            torch.cat([
                self.to_out[0](F.scaled_dot_product_attention(part, k[i : i + 1], v[i : i + 1]))
                for part in q[i : i + 1].split(QUERY_CHUNK, dim=2)
            ], dim=2)
            for i in range(q.shape[0])
        ])  # (b*t, 1, h*w, c)
        return x + rearrange(y, "(b t) 1 (h w) c -> b c t h w", b=b, h=h)


class MidBlock(nn.Module):
    """Resnet, per-frame attention, resnet at the narrowest resolution."""

    def __init__(self, channels: int, groups: int, eps: float, **factory) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(channels, channels, groups, eps, **factory) for _ in range(2)]
        )
        self.attentions = nn.ModuleList([FrameAttention(channels, groups, eps, **factory)])

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attentions[0](x), cache)


class Downsample(nn.Module):
    """Stride-2 conv after zero-padding right and bottom by one; optionally stride 2 in time too.

    Time: T -> (T - 1) / 2 + 1 (the first frame is replicated twice in front).
    """

    def __init__(self, channels: int, temporal: bool, **factory) -> None:
        super().__init__()
        kernel = (3 if temporal else 1, 3, 3)
        stride = (2 if temporal else 1, 2, 2)
        self.conv = CausalConv3d(channels, channels, kernel, stride, spatial_padding=0, **factory)

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)), cache)  # (b, c, t', h/2, w/2)


class Upsample(nn.Module):
    """Depth-to-space ("MAGViT-v2 style") upsampling by 2 in space and optionally in time.

    A 1x1x1 conv makes ``ratio`` copies of the channels, which become sub-positions of frames, rows
    and columns; with temporal upsampling the clip's first frame would appear twice, so its second
    copy is dropped (official ``remove_head``): T -> 2T - 1. A causal 3x3x3 conv follows.
    """

    def __init__(self, channels: int, temporal: bool, **factory) -> None:
        super().__init__()
        self.time_ratio = 2 if temporal else 1
        self.upscale_conv = nn.Conv3d(channels, channels * 4 * self.time_ratio, 1, **factory)
        self.conv = CausalConv3d(channels, channels, 3, **factory)
        with torch.no_grad():  # start as nearest-neighbour upsampling, as the official init
            eye = torch.eye(channels, device=self.upscale_conv.weight.device)
            eye = eye.repeat(4 * self.time_ratio, 1)  # (ratio * c, c)
            self.upscale_conv.weight.copy_(eye[..., None, None, None])

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = rearrange(
            self.upscale_conv(x), "b (x y z c) f h w -> b c (f z) (h x) (w y)",
            x=2, y=2, z=self.time_ratio,
        )  # (b, c, t * z, 2h, 2w)
        if self.time_ratio == 2 and (cache is None or cache.phase is ChunkPhase.FIRST):
            # Drop frame 1 (the second copy of frame 0) without copying the whole tensor.
            x[:, :, 1] = x[:, :, 0]
            x = x[:, :, 1:]  # (b, c, 2t - 1, 2h, 2w)
        return self.conv(x, cache)


class ResnetStage(nn.Module):
    """Resnets, then an optional resampler kept in a one-element list named as in the checkpoint."""

    resampler_name: str  # ``downsamplers`` or ``upsamplers``

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, eps: float,
                 resampler: Downsample | Upsample | None, **factory) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(out_channels if i else in_channels, out_channels, groups, eps, **factory)
            for i in range(layers)
        )
        resamplers = None if resampler is None else nn.ModuleList([resampler])
        setattr(self, self.resampler_name, resamplers)

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        resamplers = getattr(self, self.resampler_name)
        return x if resamplers is None else resamplers[0](x, cache)


class DownBlock(ResnetStage):
    """Encoder stage (official ``DownEncoderBlock3D``)."""

    resampler_name = "downsamplers"


class UpBlock(ResnetStage):
    """Decoder stage (official ``UpDecoderBlock3D``)."""

    resampler_name = "upsamplers"
