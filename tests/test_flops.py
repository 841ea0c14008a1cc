"""Analytic FLOP counts (seedvr2.models.flops) against hand counts and against counting hooks."""

from __future__ import annotations

import torch
from torch import nn

from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit import DIT_PRESETS, DiTConfig
from seedvr2.models.flops import dit_forward_flops, vae_decode_flops, vae_encode_flops
from seedvr2.models.vae import VAEConfig

TINY_DIT = DiTConfig(dim=32, heads=2, head_dim=16, num_layers=2, mm_layers=1, txt_in_dim=8,
                     rope_dim=12, num_windows=(1, 1, 1))
TINY_VAE = VAEConfig(block_channels=(8, 16), layers_per_block=1, norm_groups=4,
                     latent_channels=4, temporal_stages=1)


def test_dit_flops_hand_count() -> None:
    # latent (1, 4, 4) -> 2 x 2 = 4 patched tokens of 33 * 4 = 132 channels; 3 text tokens;
    # SwiGLU hidden = ceil(int(2/3 * 128) / 256) * 256 = 256; one window per block.
    embed = 2 * 4 * 132 * 32 + 2 * 3 * 8 * 32 + 2 * (256 * 32 + 32 * 32 + 32 * 192)
    qkv = 2 * 7 * 32 * 96
    vid = 2 * 4 * 32 * 32 + 3 * 2 * 4 * 32 * 256  # output projection + SwiGLU
    txt = 2 * 3 * 32 * 32 + 3 * 2 * 3 * 32 * 256
    block0 = qkv + vid + txt  # video and text updated
    block1 = qkv + vid  # last block of the 3B structure: text not updated
    head = 2 * 4 * 32 * 64
    count = dit_forward_flops(TINY_DIT, (1, 4, 4), text_len=3)
    assert count.dense == embed + block0 + block1 + head
    # block 0: 7 queries x 7 keys; block 1: 4 video queries x 7 keys; x 2 products x 32 dims.
    assert count.attention == 4 * 7 * 7 * 32 + 4 * 4 * 7 * 32
    assert dit_forward_flops(TINY_DIT, (1, 4, 4), text_len=3, clips=2).total == 2 * count.total


def test_vae_flops_hand_count() -> None:
    # encode (3, 4, 4): conv_in, resnet 8->8, temporal downsample to (2, 2, 2), resnet 8->16
    # (with 1x1 shortcut), mid (2 resnets + attention over 4 positions), conv_out 16->8.
    enc = (2 * 48 * 3 * 8 * 27 + 2 * 2 * 48 * 8 * 8 * 27 + 2 * 8 * 8 * 8 * 27
           + 2 * 8 * 8 * 16 * 27 + 2 * 8 * 16 * 16 * 27 + 2 * 8 * 8 * 16
           + 4 * 2 * 8 * 16 * 16 * 27 + 2 * 4 * 2 * 4 * 16 * 16 + 2 * 8 * 16 * 8 * 27)
    count = vae_encode_flops(TINY_VAE, (3, 4, 4))
    assert count.dense == enc
    assert count.attention == 2 * 4 * 4 * 4 * 16
    # decode (2, 2, 2): conv_in, mid, 2 resnets 16->16, upscale 1x1 16->128, to (3, 4, 4),
    # conv 16->16, resnets 16->8 (+ shortcut) and 8->8, conv_out 8->3.
    dec = (2 * 8 * 4 * 16 * 27 + 4 * 2 * 8 * 16 * 16 * 27 + 2 * 4 * 2 * 4 * 16 * 16
           + 2 * 2 * 2 * 8 * 16 * 16 * 27 + 2 * 8 * 16 * 128 + 2 * 48 * 16 * 16 * 27
           + 2 * 48 * 16 * 8 * 27 + 2 * 48 * 8 * 8 * 27 + 2 * 48 * 16 * 8
           + 2 * 2 * 48 * 8 * 8 * 27 + 2 * 48 * 8 * 3 * 27)
    count = vae_decode_flops(TINY_VAE, (2, 2, 2))
    assert count.dense == dec
    assert count.attention == 2 * 4 * 4 * 4 * 16


def _count_dense(module: nn.Module, run) -> int:
    """FLOPs of every Linear / Conv3d call, counted by forward hooks."""
    total = 0

    def hook(layer: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += 2 * output.numel() * layer.in_features
        else:
            kernel = layer.weight[0].numel()  # c_in * kt * kh * kw
            total += 2 * output.numel() * kernel

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Linear, nn.Conv3d))]
    with torch.inference_mode():
        run()
    for h in handles:
        h.remove()
    return total


def test_vae_flops_match_hooks() -> None:
    vae = build_vae("tiny").eval()
    video = torch.randn(1, 3, 9, 32, 48)
    counted = _count_dense(vae, lambda: vae.encode(video))
    assert counted == vae_encode_flops(vae.config, (9, 32, 48)).dense
    latent = torch.randn(1, 16, 3, 4, 6)
    counted = _count_dense(vae, lambda: vae.decode(latent))
    assert counted == vae_decode_flops(vae.config, (3, 4, 6)).dense


def test_dit_flops_match_hooks() -> None:
    config = DIT_PRESETS["3b-tiny"]
    dit = build_dit(config).eval()
    t, h, w, text = 3, 12, 20, 5
    call = dict(vid=torch.randn(t * h * w, config.vid_in_channels),
                txt=torch.randn(text, config.txt_in_dim), vid_shape=torch.tensor([[t, h, w]]),
                txt_shape=torch.tensor([[text]]), timestep=torch.tensor([500.0]))
    counted = _count_dense(dit, lambda: dit(**call))
    assert counted == dit_forward_flops(config, (t, h, w), text).dense
