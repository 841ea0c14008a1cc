"""The APT-style discriminator on a tiny backbone."""

from __future__ import annotations

import copy

import pytest
import torch

from seedvr2.errors import ConfigError
from seedvr2.models import build_dit
from seedvr2.models.discriminator import DiscriminatorConfig, SeedVR2Discriminator


def _batch(config, shapes, texts, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        vid=torch.randn(sum(t * h * w for t, h, w in shapes), config.vid_in_channels, generator=g),
        txt=torch.randn(sum(texts), config.txt_in_dim, generator=g),
        vid_shape=torch.tensor(shapes), txt_shape=torch.tensor(texts)[:, None],
        timestep=torch.tensor([500.0] * len(shapes)),
    )


def test_logits_per_clip_and_features_before_heads() -> None:
    backbone = build_dit("3b-tiny")
    disc = SeedVR2Discriminator(copy.deepcopy(backbone), DiscriminatorConfig(head_blocks=(2, 4)))
    batch = _batch(backbone.config, [(2, 4, 6), (1, 8, 4)], [3, 5])
    out = disc(**batch)
    assert out.logits.shape == (2,)
    assert [f.shape for f in out.features] == [(2 * 2 * 3 + 8, 128)] * 2
    # The features are the backbone's video tokens after block 2 (1-indexed).
    state = backbone.embed(**batch)
    for i in range(2):
        state = backbone.run_block(i, state)
    assert torch.allclose(out.features[0], state.vid, atol=1e-6)


def test_clips_are_judged_independently() -> None:
    disc = SeedVR2Discriminator(build_dit("7b-tiny"), DiscriminatorConfig(head_blocks=(1, 2)))
    shapes, texts = [(2, 4, 6), (1, 8, 4)], [3, 5]
    both = disc(**_batch(disc.backbone.config, shapes, texts)).logits
    first = _batch(disc.backbone.config, shapes, texts)
    rows = 2 * 4 * 6
    alone = disc(vid=first["vid"][:rows], txt=first["txt"][:3], vid_shape=first["vid_shape"][:1],
                 txt_shape=first["txt_shape"][:1], timestep=first["timestep"][:1]).logits
    assert torch.allclose(both[:1], alone, atol=1e-5)


def test_gradients_reach_heads_and_used_backbone_only() -> None:
    disc = SeedVR2Discriminator(build_dit("3b-tiny"), DiscriminatorConfig(head_blocks=(2,)))
    disc(**_batch(disc.backbone.config, [(1, 4, 4)], [2])).logits.sum().backward()
    assert disc.heads[0].query.grad is not None
    assert disc.backbone.blocks[0].attn.proj_qkv.vid.weight.grad is not None
    assert not disc.backbone.blocks[3].mlp.all.proj_in.weight.requires_grad
    assert not disc.backbone.vid_out.proj.weight.requires_grad


def test_default_heads_scale_with_depth_and_bad_heads_fail() -> None:
    assert DiscriminatorConfig.proportional(36) == (16, 26, 36)
    assert DiscriminatorConfig.proportional(32) == (14, 23, 32)
    with pytest.raises(ConfigError, match="outside"):
        SeedVR2Discriminator(build_dit("3b-tiny"), DiscriminatorConfig(head_blocks=(5,)))
