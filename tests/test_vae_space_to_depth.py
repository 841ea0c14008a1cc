"""The space-to-depth VAE weights (bundled seedvr2-small): exact pixel-unshuffle and inverse."""

from __future__ import annotations

import json

import pytest
import torch
from einops import rearrange
from safetensors.torch import save_file

from seedvr2.errors import ConfigError
from seedvr2.models.vae import TileSpec
from seedvr2.models.vae.space_to_depth import (
    recognise_space_to_depth,
    space_to_depth_config,
    space_to_depth_vae,
)
from seedvr2.weights.networks import load_vae


@pytest.fixture(scope="module")
def vae():
    return space_to_depth_vae(space_to_depth_config((16, 32))).eval()


def test_encoder_mean_is_pixel_unshuffle_and_decoder_inverts_it(vae) -> None:
    torch.manual_seed(0)
    video = torch.rand(1, 3, 6, 20, 28) * 2 - 1  # any frame count: no temporal compression
    with torch.no_grad():
        posterior = vae.encode(video)
        restored = vae.decode(posterior.mean)
    expected = rearrange(video, "b c f (h p) (w q) -> b (c p q) f h w", p=2, q=2)
    assert posterior.mean.shape == (1, 12, 6, 10, 14)
    assert (posterior.mean - expected).abs().max() < 1e-5
    assert (posterior.logvar == -30).all()  # the posterior is a point
    assert (restored - video).abs().max() < 1e-5


def test_the_identity_holds_for_flat_extreme_and_tiled_frames(vae) -> None:
    flat = torch.full((1, 3, 16, 16), -1.0)  # a black image: no signal energy at all
    bright = torch.ones(1, 3, 16, 16)
    torch.manual_seed(1)
    noise = torch.rand(1, 3, 3, 48, 64) * 2 - 1
    tile = TileSpec(size=(32, 32), overlap=(8, 8))
    with torch.no_grad():
        for x in (flat, bright):
            assert (vae.decode(vae.encode(x).mean) - x).abs().max() < 1e-5
        latent = vae.encode(noise, tile=tile).mean
        assert (vae.decode(latent, tile=tile) - noise).abs().max() < 1e-4


def test_bf16_weights_keep_the_identity_within_a_level(vae) -> None:
    half = space_to_depth_vae(space_to_depth_config((16, 32))).to(torch.bfloat16).eval()
    torch.manual_seed(2)
    x = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        y = half.decode(half.encode(x.bfloat16()).mean).float()
    assert (y - x).abs().max() < 2 / 255  # one 8-bit level on [-1, 1]


def test_two_stages_and_invalid_widths() -> None:
    deep = space_to_depth_vae(space_to_depth_config((16, 48, 112))).eval()
    x = torch.rand(1, 3, 1, 16, 24) * 2 - 1
    with torch.no_grad():
        z = deep.encode(x).mean
        assert z.shape == (1, 48, 1, 4, 6)
        assert (deep.decode(z) - x).abs().max() < 1e-4
    with pytest.raises(ConfigError, match=r"block_channels\[1\] = 24 is too narrow"):
        space_to_depth_config((16, 24))
    with pytest.raises(ConfigError, match="must differ"):
        space_to_depth_config((32, 32))
    with pytest.raises(ConfigError, match="differ from space_to_depth_config"):
        from dataclasses import replace
        space_to_depth_vae(replace(space_to_depth_config((16, 32)), norm_groups=2))


def test_the_direct_path_equals_the_networks_and_is_used_only_for_exact_weights(tmp_path) -> None:
    for widths in ((16, 32), (16, 48, 112)):
        networks = space_to_depth_vae(space_to_depth_config(widths)).eval()
        path = tmp_path / f"vae{len(widths)}.safetensors"
        save_file(networks.state_dict(), str(path), metadata={
            "config": json.dumps(networks.config.to_dict())})
        direct = load_vae(path, torch.float32)
        assert direct.space_to_depth_stages == len(widths) - 1
        torch.manual_seed(2)
        for x in (torch.rand(1, 3, 5, 24, 40) * 2 - 1, torch.rand(2, 3, 16, 32) * 2 - 1):
            with torch.no_grad():
                ours, theirs = direct.encode(x), networks.encode(x)
                assert (ours.mean - theirs.mean).abs().max() < 1e-5
                assert torch.equal(ours.logvar, theirs.logvar.clamp(min=-30))
                assert (direct.decode(ours.mean) - x).abs().max() < 1e-6
                assert (direct.decode(ours.mean) - networks.decode(theirs.mean)).abs().max() < 1e-5
    with torch.no_grad():  # one weight off: the networks run, not the shortcut
        networks.decoder.conv_out.bias[0] += 1e-3
    assert not recognise_space_to_depth(networks)
    assert networks.space_to_depth_stages is None
