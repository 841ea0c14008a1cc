"""Weights that make the causal VAE structure an exact space-to-depth transform (no compression).

The bundled seedvr2-small model uses it. A learnt VAE that compresses enough to matter caps the
output quality far below what a small DiT can reach on a CPU training budget (the previous
bundled VAE reconstructed clean frames at ~22 dB, below bicubic on mildly degraded inputs), so
the small model keeps the released VAE *structure* but sets its weights by construction: the
encoder's posterior mean is repeated 2x pixel-unshuffle of the frame (channel order ``(c, p, q)``
per stage) and the decoder inverts it to float rounding (~1e-5 on [-1, 1]).

How the identity passes the parts of the structure that are not linear:

* resnet branches (``conv2``) and attention outputs are zero, so resnets and attention blocks
  are identities; 1x1 shortcuts copy channels;
* downsamplers pick the four 2x2 sub-positions; upsamplers' 1x1 conv puts them back
  (their depth-to-space layout) and their 3x3 conv is a centre tap;
* every signal channel travels with a negated twin, plus two constant channels ``+K`` and
  ``-K``. Before each output GroupNorm + SiLU the group mean is then exactly 0 and the group
  standard deviation is ``K sqrt(2 / N)`` up to a relative ``sum(x^2) / (2 K^2)`` (< 1e-5 for
  frames in [-1, 1]), so the norm is a known scale; ``silu(y) - silu(-y) = y`` undoes the SiLU.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from seedvr2.errors import ConfigError

from .blocks import Downsample, ResnetBlock, Upsample
from .config import VAEConfig
from .model import LOGVAR_RANGE, VideoAutoencoder

CARRIER = 1024.0  # K: the constant channels that fix the output GroupNorms' scale


def space_to_depth_config(block_channels: tuple[int, ...] = (16, 32)) -> VAEConfig:
    """The VAE config of :func:`space_to_depth_vae`: ``len(block_channels) - 1`` 2x stages.

    Stage ``i`` has ``R = 3 * 4**i`` signal channels. The decoder carries them with their twins
    and two constants (``2R + 2`` channels); the encoder carries the signals alone and makes the
    twins in the last block's first shortcut, so the last two widths must differ. The latent has
    the ``3 * 4**stages`` channels of the last stage. One GroupNorm group (twins must share it).
    """
    stages = len(block_channels) - 1
    if stages < 1:
        raise ConfigError("a space-to-depth VAE needs at least two blocks (one 2x stage)")
    if block_channels[-1] == block_channels[-2]:
        raise ConfigError("the last two block widths of a space-to-depth VAE must differ (the "
                          "encoder makes the negated twins in the last block's shortcut)")
    for i, ch in enumerate(block_channels):
        need = max(_width(i), _signals(i + 1) if i < stages else 0)
        if ch < need:
            raise ConfigError(
                f"block_channels[{i}] = {ch} is too narrow for a space-to-depth VAE: stage {i} "
                f"needs {need} channels (signals, negated twins, two constants)"
            )
    return VAEConfig(
        latent_channels=_signals(stages), block_channels=tuple(block_channels),
        layers_per_block=1, norm_groups=1, temporal_stages=0,
        scaling_factor=1.0, shifting_factor=0.0,
    )


def space_to_depth_vae(config: VAEConfig) -> VideoAutoencoder:
    """A VAE of ``config`` (see :func:`space_to_depth_config`) with the space-to-depth weights."""
    expected = space_to_depth_config(config.block_channels)
    mismatched = [
        f.name for f in dataclasses.fields(VAEConfig)
        if f.name not in ("norm_eps", "temporal_chunk", "in_channels", "out_channels")
        and getattr(config, f.name) != getattr(expected, f.name)
    ]
    if mismatched or (config.in_channels, config.out_channels) != (3, 3):
        raise ConfigError(
            f"config fields {mismatched or ['in/out channels']} differ from "
            "space_to_depth_config(block_channels); build the config with that function"
        )
    vae = VideoAutoencoder(config)
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        _identity_blocks(vae)
        _build_encoder(vae, len(config.block_channels) - 1)
        _build_decoder(vae, len(config.block_channels) - 1)
    return vae


@torch.no_grad()
def recognise_space_to_depth(vae: VideoAutoencoder) -> bool:
    """Turn on ``vae``'s direct pixel-(un)shuffle path when its weights are exactly those of
    :func:`space_to_depth_vae` (in their dtype); returns whether they are."""
    try:
        expected = space_to_depth_vae(vae.config)
    except ConfigError:
        return False
    state = vae.state_dict()
    exact = all(
        torch.equal(state[name], value.to(state[name].dtype))
        for name, value in expected.state_dict().items()
    )
    vae.space_to_depth_stages = len(vae.config.block_channels) - 1 if exact else None
    return exact


def _signals(stage: int) -> int:
    return 3 * 4**stage


def _width(stage: int) -> int:
    return 2 * _signals(stage) + 2


def _identity_blocks(vae: VideoAutoencoder) -> None:
    """Resnets and attention blocks become identities (their zeroed ``conv2`` / ``to_out`` add 0);
    1x1 shortcuts copy channels; every GroupNorm starts as a plain normalisation."""
    for module in vae.modules():
        if isinstance(module, nn.GroupNorm):
            module.weight.fill_(1.0)
        if isinstance(module, ResnetBlock) and module.conv_shortcut is not None:
            weight = module.conv_shortcut.weight  # (out, in, 1, 1, 1)
            weight[:, :, 0, 0, 0] = torch.eye(weight.shape[0], weight.shape[1])


def _centre(conv: nn.Conv3d) -> tuple[int, int, int]:
    """Kernel index of the current frame (causal: the last) and the spatial centre."""
    return conv.kernel_size[0] - 1, conv.kernel_size[1] // 2, conv.kernel_size[2] // 2


def _carry(conv: nn.Conv3d, stage: int) -> None:
    """Copy the signals, twins and constants of ``stage`` through ``conv`` (centre tap)."""
    t, h, w = _centre(conv)
    for c in range(_width(stage)):
        conv.weight[c, c, t, h, w] = 1.0


def _twins_from_signals(conv: nn.Conv3d, stage: int) -> None:
    """Signals from the inputs (centre tap), their negated twins, and the two constants."""
    t, h, w = _centre(conv)
    n = _signals(stage)
    for c in range(n):
        conv.weight[c, c, t, h, w] = 1.0
        conv.weight[n + c, c, t, h, w] = -1.0
    _constants(conv, stage)


def _constants(conv: nn.Conv3d, stage: int, offset: int = 0) -> None:
    """The ``+K`` and ``-K`` channels after the signals and twins of ``stage`` (from ``offset``)."""
    n = _signals(stage)
    conv.bias[offset + 2 * n] = CARRIER
    conv.bias[offset + 2 * n + 1] = -CARRIER


def _norm_out(norm: nn.GroupNorm, stage: int) -> None:
    """Output GroupNorm: signals and twins scaled back by the expected group std."""
    n = _signals(stage)
    norm.weight[: 2 * n] = CARRIER * math.sqrt(2.0 / norm.num_channels)


def _untwin(conv: nn.Conv3d, stage: int) -> None:
    """``out = silu(y) - silu(-y) = y`` from each signal and its twin (centre tap)."""
    t, h, w = _centre(conv)
    n = _signals(stage)
    for c in range(n):
        conv.weight[c, c, t, h, w] = 1.0
        conv.weight[c, n + c, t, h, w] = -1.0


def _build_encoder(vae: VideoAutoencoder, stages: int) -> None:
    enc = vae.encoder
    t, h, w = _centre(enc.conv_in)
    for c in range(3):
        enc.conv_in.weight[c, c, t, h, w] = 1.0
    for i, block in enumerate(enc.down_blocks[:-1]):
        down: Downsample = block.downsamplers[0]
        for c in range(_signals(i)):  # (c, p, q) order; taps (p, q) of the right/bottom-padded conv
            for p in range(2):
                for q in range(2):
                    down.conv.weight[c * 4 + p * 2 + q, c, 0, p, q] = 1.0
    shortcut = enc.down_blocks[-1].resnets[0].conv_shortcut  # (out, in, 1, 1, 1)
    shortcut.weight.zero_()  # it was an identity copy (_identity_blocks)
    _twins_from_signals(shortcut, stages)
    _norm_out(enc.conv_norm_out, stages)
    _untwin(enc.conv_out, stages)
    enc.conv_out.bias[_signals(stages):] = LOGVAR_RANGE[0]


def _build_decoder(vae: VideoAutoencoder, stages: int) -> None:
    dec = vae.decoder
    _twins_from_signals(dec.conv_in, stages)
    for j, block in enumerate(dec.up_blocks):
        if block.upsamplers is None:
            continue
        up: Upsample = block.upsamplers[0]
        coarse, fine = stages - j, stages - j - 1
        n, width = _signals(fine), up.conv.in_channels
        for c in range(n):
            for x in range(2):
                for y in range(2):
                    src = c * 4 + x * 2 + y
                    sub = (x * 2 + y) * width  # depth-to-space layout "(x y c)"
                    up.upscale_conv.weight[sub + c, src, 0, 0, 0] = 1.0
                    up.upscale_conv.weight[sub + n + c, _signals(coarse) + src, 0, 0, 0] = 1.0
        for sub in range(4):  # every sub-position gets the constants
            _constants(up.upscale_conv, fine, offset=sub * width)
        _carry(up.conv, fine)
    _norm_out(dec.conv_norm_out, 0)
    _untwin(dec.conv_out, 0)
