"""The causal video VAE on the tiny preset with random weights: causality, chunking, tiling, API.

Golden parity with the official implementation lives in ``test_golden.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from golden import golden_path
from seedvr2.errors import ConfigError, InputError
from seedvr2.models.vae import VAE_PRESETS, TileSpec, VAEConfig, VideoAutoencoder, build_vae
from seedvr2.models.vae.blocks import FrameAttention, ResnetBlock
from seedvr2.models.vae.tiling import tiled_map

# Constructor arguments of the golden VAE (official names), as stored in its metadata.
OFFICIAL_TINY = {
    "act_fn": "silu", "block_out_channels": [16, 16, 32, 32],
    "down_block_types": ["DownEncoderBlock3D"] * 4, "in_channels": 3, "latent_channels": 16,
    "layers_per_block": 2, "norm_num_groups": 8, "out_channels": 3, "slicing_sample_min_size": 4,
    "temporal_scale_num": 2, "inflation_mode": "pad", "up_block_types": ["UpDecoderBlock3D"] * 4,
    "spatial_downsample_factor": 8, "temporal_downsample_factor": 4, "use_quant_conv": False,
    "use_post_quant_conv": False, "freeze_encoder": False,
}


@pytest.fixture(scope="module")
def vae() -> VideoAutoencoder:
    torch.manual_seed(0)
    return build_vae("tiny").eval()


def video(frames: int, height: int = 32, width: int = 48, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, height, width, generator=generator) * 2 - 1


def latent(frames: int, height: int = 4, width: int = 6, seed: int = 2) -> torch.Tensor:
    return torch.randn(1, 16, frames, height, width, generator=torch.Generator().manual_seed(seed))


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.shape == ref.shape, (tuple(out.shape), tuple(ref.shape))
    return float((out - ref).norm() / ref.norm())


@contextmanager
def count_calls(module: torch.nn.Module) -> Iterator[list[int]]:
    calls = [0]
    handle = module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


# Causality ------------------------------------------------------------------------------------


@torch.no_grad()
def test_first_frame_alone_encodes_to_first_latent_frame(vae: VideoAutoencoder) -> None:
    clip = video(9)
    whole = vae.encode(clip, temporal_chunk=0).mean
    first = vae.encode(clip[:, :, :1], temporal_chunk=0).mean
    torch.testing.assert_close(first, whole[:, :, :1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2])
@torch.no_grad()
def test_first_4k_plus_1_frames_encode_to_first_k_plus_1_latents(vae: VideoAutoencoder,
                                                                  k: int) -> None:
    clip = video(13)
    whole = vae.encode(clip, temporal_chunk=0)
    prefix = vae.encode(clip[:, :, : 4 * k + 1], temporal_chunk=0)
    torch.testing.assert_close(prefix.mean, whole.mean[:, :, : k + 1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(prefix.logvar, whole.logvar[:, :, : k + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [0, 1, 2])
@torch.no_grad()
def test_first_k_plus_1_latents_decode_to_first_4k_plus_1_frames(vae: VideoAutoencoder,
                                                                  k: int) -> None:
    z = latent(4)
    whole = vae.decode(z, temporal_chunk=0)
    prefix = vae.decode(z[:, :, : k + 1], temporal_chunk=0)
    # float32 noise of convolutions over different lengths only; a causality leak is O(1e-1)
    torch.testing.assert_close(prefix, whole[:, :, : 4 * k + 1], rtol=1e-4, atol=2e-5)


# Temporal chunking ----------------------------------------------------------------------------


@pytest.mark.parametrize(("chunk", "passes"), [(4, 4), (8, 2), (12, 2)])
@torch.no_grad()
def test_chunked_encode_equals_whole_clip(vae: VideoAutoencoder, chunk: int, passes: int) -> None:
    clip = video(17)
    whole = vae.encode(clip, temporal_chunk=0)
    with count_calls(vae.encoder.conv_in) as calls:
        chunked = vae.encode(clip, temporal_chunk=chunk)
    assert calls[0] == passes
    assert rel_error(chunked.mean, whole.mean) < 1e-5
    assert rel_error(chunked.logvar, whole.logvar) < 1e-5


@pytest.mark.parametrize(("chunk", "passes"), [(4, 4), (8, 2), (12, 2)])
@torch.no_grad()
def test_chunked_decode_equals_whole_clip(vae: VideoAutoencoder, chunk: int, passes: int) -> None:
    z = latent(5)
    whole = vae.decode(z, temporal_chunk=0)
    with count_calls(vae.decoder.conv_in) as calls:
        chunked = vae.decode(z, temporal_chunk=chunk)
    assert calls[0] == passes
    assert chunked.shape == (1, 3, 17, 32, 48)
    assert rel_error(chunked, whole) < 1e-5


def test_chunked_gradients_equal_whole_clip_gradients(vae: VideoAutoencoder) -> None:
    grads = []
    for chunk in (0, 4):
        clip = video(9).requires_grad_()
        decoded = vae.decode(vae.encode(clip, temporal_chunk=chunk).mean, temporal_chunk=chunk)
        decoded.square().sum().backward()
        grads.append(clip.grad)
    assert rel_error(grads[1], grads[0]) < 1e-5


# Spatial tiling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "in_scale", "out_scale"),
    [
        (lambda x: x * 2, 1, 1),
        (lambda x: F.avg_pool3d(x, (1, 8, 8)), 8, 1),
        (lambda x: x.repeat_interleave(8, dim=-2).repeat_interleave(8, dim=-1), 1, 8),
    ],
    ids=["pointwise", "pool", "upsample"],
)
def test_tiled_map_is_exact_for_position_independent_maps(fn, in_scale: int,
                                                          out_scale: int) -> None:
    x = torch.randn(1, 2, 3, 11 * in_scale, 13 * in_scale)  # ragged: last tiles are shifted back
    torch.testing.assert_close(tiled_map(fn, x, (4, 5), (2, 1), in_scale, out_scale), fn(x))


@pytest.mark.parametrize("tile", [TileSpec(64, 16), TileSpec((32, 48), (0, 0))])
@torch.no_grad()
def test_one_tile_covering_the_frame_is_exactly_untiled(vae: VideoAutoencoder,
                                                        tile: TileSpec) -> None:
    clip, z = video(5), latent(2)
    assert torch.equal(vae.encode(clip, tile=tile).mean, vae.encode(clip).mean)
    assert torch.equal(vae.decode(z, tile=tile), vae.decode(z))


@torch.no_grad()
def test_tiles_are_blended_linearly_across_their_overlap(vae: VideoAutoencoder) -> None:
    # Width 64 px = 8 cells, tiles of 6 cells overlapping by 4: columns [0, 6) and [2, 8).
    clip = video(5, 32, 64)
    tiled = vae.encode(clip, tile=TileSpec((32, 48), (0, 32))).mean
    left = vae.encode(clip[..., :48]).mean
    right = vae.encode(clip[..., 16:]).mean
    ramp = torch.tensor([1, 2, 3, 4]) / 5  # weight of the right tile across the 4 shared cells
    expected = torch.cat(
        [left[..., :2], left[..., 2:6] * (1 - ramp) + right[..., :4] * ramp, right[..., 4:]], -1
    )
    torch.testing.assert_close(tiled, expected)


def _local_vae() -> VideoAutoencoder:
    """Tiny VAE with identity resnets and attention: close to local, unlike random GroupNorm nets.

    With random weights the per-frame GroupNorm statistics of a tile differ from the frame's
    (zero-padded tile borders dominate), so tiling a random full network is not close to untiled;
    a trained VAE on natural frames is nearer to this local network.
    """
    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, ResnetBlock):
                module.conv2.weight.zero_()
                module.conv2.bias.zero_()
            if isinstance(module, FrameAttention):
                module.to_out[0].weight.zero_()
                module.to_out[0].bias.zero_()
    return vae


@torch.no_grad()
def test_overlapping_tiles_decode_close_to_untiled() -> None:
    vae = _local_vae()
    z = latent(1, 16, 16)
    whole = vae.decode(z)
    seams = rel_error(vae.decode(z, tile=TileSpec(64, 0)), whole)
    blended = rel_error(vae.decode(z, tile=TileSpec(96, 32)), whole)
    assert blended < 0.05
    assert blended < seams / 3


@torch.no_grad()
def test_overlapping_tiles_encode_close_to_untiled() -> None:
    vae = _local_vae()
    clip = video(1, 128, 128)
    whole = vae.encode(clip).mean
    seams = rel_error(vae.encode(clip, tile=TileSpec(64, 0)).mean, whole)
    blended = rel_error(vae.encode(clip, tile=TileSpec(96, 32)).mean, whole)
    assert blended < 0.1
    assert blended < seams / 3


# Shapes, posterior, config --------------------------------------------------------------------


@torch.no_grad()
def test_image_round_trip_shapes(vae: VideoAutoencoder) -> None:
    image = video(1)[:, :, 0].expand(2, -1, -1, -1)
    posterior = vae.encode(image)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 16, 4, 6)
    assert vae.decode(posterior.mean).shape == (2, 3, 32, 48)
    assert vae.decode(posterior.mean[:, :, None]).shape == (2, 3, 1, 32, 48)


@torch.no_grad()
def test_video_round_trip_shapes(vae: VideoAutoencoder) -> None:
    posterior = vae.encode(video(9))
    assert posterior.mean.shape == (1, 16, 3, 4, 6)
    assert vae.decode(posterior.mean).shape == (1, 3, 9, 32, 48)


@torch.no_grad()
def test_posterior_clamps_logvar_and_samples_reproducibly() -> None:
    vae = build_vae("tiny")
    vae.encoder.conv_out.bias.data[16:] = 1e3
    posterior = vae.encode(video(1))
    assert torch.all(posterior.logvar == 20.0)
    torch.testing.assert_close(posterior.std, torch.exp(0.5 * posterior.logvar))
    draws = [posterior.sample(torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], posterior.mean)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: v.encode(torch.zeros(1, 4, 5, 32, 32)), "received (1, 4, 5, 32, 32)"),
        (lambda v: v.encode(torch.zeros(1, 3, 4, 32, 32)), "1 + 4n"),
        (lambda v: v.encode(torch.zeros(1, 3, 5, 30, 32)), "multiples of 8"),
        (lambda v: v.encode(torch.zeros(3, 32, 32)), "received (3, 32, 32)"),
        (lambda v: v.encode(torch.zeros(1, 3, 5, 32, 32, dtype=torch.long)), "float"),
        (lambda v: v.decode(torch.zeros(1, 8, 2, 4, 4)), "(B, 16, T, H, W)"),
        (lambda v: v.encode(torch.zeros(1, 3, 9, 32, 32), temporal_chunk=3), "multiple of 4"),
        (lambda v: v.decode(torch.zeros(1, 16, 2, 4, 4), temporal_chunk=-4), "received -4"),
        (lambda v: v.encode(torch.zeros(1, 3, 1, 32, 32), tile=TileSpec(20, 4)), "multiples of 8"),
        (lambda v: TileSpec(64, 64), "overlap"),
    ],
)
def test_bad_inputs_raise_input_error(vae: VideoAutoencoder, call, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        call(vae)


def test_official_arguments_give_the_tiny_preset() -> None:
    assert VAEConfig.from_official(OFFICIAL_TINY) == VAE_PRESETS["tiny"]
    assert build_vae(OFFICIAL_TINY).config == VAE_PRESETS["tiny"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"extra_cond_dim": 4}, "extra_cond_dim"),
        ({"use_quant_conv": True}, "use_quant_conv"),
        ({"inflation_mode": "tail"}, "inflation_mode"),
        ({"temporal_downsample_factor": 8}, "temporal_downsample_factor"),
        ({"down_block_types": ["DownBlock3D"] * 4}, "down_block_types"),
    ],
)
def test_unsupported_official_arguments_raise_config_error(change: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        VAEConfig.from_official({**OFFICIAL_TINY, **change})


def test_config_round_trips_through_dict() -> None:
    config = VAE_PRESETS["tiny"]
    assert build_vae(config.to_dict()).config == config
    with pytest.raises(ConfigError, match="norm_groups"):
        VAEConfig(block_channels=(12, 16), norm_groups=8)


def test_released_meta_build_has_the_checkpoint_keys_and_shapes() -> None:
    expected = json.loads(golden_path("manifest_vae.json").read_text())
    state = build_vae(device="meta").state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert sum(v.numel() for v in state.values()) == 250_648_227
