"""Analytic FLOP counts of the DiT and the VAE, from their configs and input sizes.

Only the matrix-multiply work is counted (linear layers, convolutions, attention products), at
2 FLOPs per multiply-add; norms, activations, RoPE, biases and the time embedding's sinusoid are
left out (a few per cent at most). The counts are what the benchmarks divide by the measured time
to report achieved FLOP/s against the machine's matrix-multiply rate.

* DiT: per block, the video and text projections (QKV, output, MLP) plus the attention of each
  window segment (window video tokens + the clip's text), as :mod:`.dit.attention` computes it.
* VAE: every convolution (3x3x3 causal, strided downsamplers, 1x1x1 shortcuts and upscalers) at
  its output size, plus the per-frame attention of the mid blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dit.config import SHIFTED, DiTConfig
from .dit.windows import window_partition
from .vae.config import VAEConfig


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call, split into dense layers and attention products."""

    dense: int
    attention: int

    @property
    def total(self) -> int:
        return self.dense + self.attention

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.dense + other.dense, self.attention + other.attention)


def _linear(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def dit_forward_flops(
    config: DiTConfig,
    latent_shape: tuple[int, int, int],  # latent (t, h, w) of one clip, before patching
    text_len: int,
    clips: int = 1,
) -> FlopCount:
    """FLOPs of one DiT forward over ``clips`` clips of the same latent shape and text length."""
    _, ph, pw = config.patch_size
    t, h, w = latent_shape
    grid = (t, h // ph, w // pw)
    vid = grid[0] * grid[1] * grid[2]  # patched video tokens
    d, inner, hidden = config.dim, config.heads * config.head_dim, config.mlp_hidden
    mlp_mats = 3 if config.mlp_type == "swiglu" else 2

    dense = _linear(vid, config.patch_channels, d) + _linear(text_len, config.txt_in_dim, d)
    dense += _linear(1, 256, d) + _linear(1, d, d) + _linear(1, d, config.emb_dim)
    attention = 0
    last = config.num_layers - 1
    for index, method in enumerate(config.window_methods):
        with_text = not (config.last_block_vid_only and index == last)
        # QKV of both streams is always computed (text keys/values join every window).
        dense += _linear(vid + text_len, d, 3 * inner)
        dense += _linear(vid, inner, d) + mlp_mats * _linear(vid, d, hidden)
        if with_text:
            dense += _linear(text_len, inner, d) + mlp_mats * _linear(text_len, d, hidden)
        for span_t, span_h, span_w in window_partition(grid, config.num_windows, method == SHIFTED):
            win = (span_t[1] - span_t[0]) * (span_h[1] - span_h[0]) * (span_w[1] - span_w[0])
            keys = win + text_len
            queries = keys if with_text else win
            attention += 2 * 2 * queries * keys * inner  # scores and weighted values
    dense += _linear(vid, d, config.vid_out_channels * ph * pw)
    return FlopCount(dense * clips, attention * clips)


def _conv(voxels: int, c_in: int, c_out: int, kernel: int) -> int:
    return 2 * voxels * c_in * c_out * kernel


def _resnet(voxels: int, c_in: int, c_out: int) -> int:
    flops = _conv(voxels, c_in, c_out, 27) + _conv(voxels, c_out, c_out, 27)
    return flops + (_conv(voxels, c_in, c_out, 1) if c_in != c_out else 0)


def _mid(frames: int, h: int, w: int, c: int) -> FlopCount:
    """Two resnets and one single-head attention over each frame's h*w positions."""
    positions = h * w
    dense = 2 * _resnet(frames * positions, c, c) + frames * 4 * _linear(positions, c, c)
    return FlopCount(dense, frames * 2 * 2 * positions * positions * c)


def vae_encode_flops(config: VAEConfig, video_shape: tuple[int, int, int]) -> FlopCount:
    """FLOPs of encoding one clip of ``video_shape`` = (frames, H, W) (1 + 4n frames)."""
    t, h, w = video_shape
    ch = config.block_channels
    last = len(ch) - 1
    dense = _conv(t * h * w, config.in_channels, ch[0], 27)
    attention = 0
    for i, out in enumerate(ch):
        c_in = ch[max(i - 1, 0)]
        for layer in range(config.layers_per_block):
            dense += _resnet(t * h * w, out if layer else c_in, out)
        if i < last:
            temporal = i >= last - config.temporal_stages
            t = (t - 1) // 2 + 1 if temporal else t
            h, w = h // 2, w // 2
            dense += _conv(t * h * w, out, out, (3 if temporal else 1) * 9)
    mid = _mid(t, h, w, ch[-1])
    dense += mid.dense + _conv(t * h * w, ch[-1], 2 * config.latent_channels, 27)
    return FlopCount(dense, attention + mid.attention)


def vae_decode_flops(config: VAEConfig, latent_shape: tuple[int, int, int]) -> FlopCount:
    """FLOPs of decoding one latent of ``latent_shape`` = (t, h, w)."""
    t, h, w = latent_shape
    ch = config.block_channels[::-1]
    last = len(ch) - 1
    dense = _conv(t * h * w, config.latent_channels, ch[0], 27)
    mid = _mid(t, h, w, ch[0])
    dense += mid.dense
    for i, out in enumerate(ch):
        c_in = ch[max(i - 1, 0)]
        for layer in range(config.layers_per_block + 1):
            dense += _resnet(t * h * w, out if layer else c_in, out)
        if i < last:
            ratio = 2 if i < config.temporal_stages else 1
            dense += _conv(t * h * w, out, out * 4 * ratio, 1)  # depth-to-space channels
            t, h, w = (2 * t - 1 if ratio == 2 else t), 2 * h, 2 * w
            dense += _conv(t * h * w, out, out, 27)
    dense += _conv(t * h * w, ch[-1], config.out_channels, 27)
    return FlopCount(dense, mid.attention)
