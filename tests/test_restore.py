"""The Restorer API on arrays and frame streams, with a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from media_fixtures import pattern, write_image, write_video
from seedvr2 import Restorer
from seedvr2.errors import CheckpointError, InputError
from seedvr2.pipeline.batching import plan_batches
from seedvr2.pipeline.models import default_model
from seedvr2.weights.networks import load_dit, load_vae


@pytest.fixture(scope="module")
def restorer(tiny_model) -> Restorer:
    return Restorer.from_pretrained(tiny_model, device="cpu", batch_size=5, overlap=2)


def _frames(count: int, height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, height, width, channels), np.float32)


def test_odd_size_video_keeps_its_size_and_frame_count(restorer):
    out = restorer.restore(_frames(7, 120, 212))
    assert out.shape == (7, 120, 212, 3)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_scale_and_resolution_set_the_output_size(restorer):
    assert restorer.with_options(scale=2).restore(_frames(1, 17, 23)).shape == (1, 34, 46, 3)
    assert restorer.with_options(resolution=48).restore(_frames(1, 24, 40)).shape == (1, 48, 80, 3)


def test_a_single_image_is_restored_as_an_image(restorer):
    assert restorer.restore(_frames(1, 32, 48)[0]).shape == (32, 48, 3)


def test_integer_frames_are_read_over_their_full_range(restorer):
    frames = _frames(1, 16, 24)
    as_uint8 = np.round(frames * 255).astype(np.uint8)
    as_uint16 = as_uint8.astype(np.uint16) * 257  # the same levels in 16 bits
    expected = restorer.restore(as_uint8.astype(np.float32) / 255)
    np.testing.assert_allclose(restorer.restore(as_uint8), expected, atol=1e-6)
    np.testing.assert_allclose(restorer.restore(as_uint16), expected, atol=1e-6)
    with pytest.raises(InputError, match="float or integer frames"):
        restorer.restore(np.zeros((1, 16, 24, 3), bool))


def test_a_file_path_is_restored(restorer, tmp_path):
    image = write_image(tmp_path / "p.png", np.round(_frames(1, 16, 24)[0] * 255).astype(np.uint8),
                        "rgb24")  # fmt: skip
    video = write_video(tmp_path / "v.mkv", pattern(3, 16, 24), codec="ffv1", pix_fmt="yuv444p")
    assert restorer.restore(image).shape == (16, 24, 3)
    assert restorer.restore(str(video)).shape == (3, 16, 24, 3)
    with pytest.raises(InputError):
        restorer.restore(tmp_path / "missing.mp4")


def test_alpha_is_resized_not_restored(restorer):
    frames = _frames(2, 16, 24, channels=4)
    out = restorer.with_options(scale=2).restore(frames)
    alpha = torch.nn.functional.interpolate(
        torch.from_numpy(frames[..., 3:]).permute(0, 3, 1, 2), size=(32, 48), mode="bicubic",
        antialias=True,
    ).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # fmt: skip
    assert out.shape == (2, 32, 48, 4)
    np.testing.assert_allclose(out[..., 3:], alpha, atol=1e-6)


def test_same_seed_same_result_other_seed_other_result(restorer):
    frames = _frames(5, 16, 16)
    first, again = restorer.restore(frames), restorer.restore(frames)
    other = restorer.with_options(seed=1).restore(frames)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_strength_blends_the_model_output_with_the_resized_input(restorer):
    frames = _frames(5, 16, 24)
    model, half, double = (restorer.with_options(scale=2, strength=s).restore(frames)
                           for s in (1.0, 0.5, 2.0))  # fmt: skip
    resized = restorer.with_options(scale=2, strength=0.0).restore(frames)
    np.testing.assert_array_equal(resized, restorer.with_options(scale=2, strength=0.0,
                                                                 seed=1).restore(frames))
    assert np.abs(model - resized).max() > 1e-2  # the model changes the resized input
    unclipped = (model > 0) & (model < 1)  # the output is clipped to [0, 1] after blending
    assert unclipped.mean() > 0.9
    np.testing.assert_allclose(half[unclipped], ((model + resized) / 2)[unclipped], atol=1e-5)
    np.testing.assert_allclose(double[unclipped], np.clip(2 * model - resized, 0, 1)[unclipped],
                               atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("strength", [-0.1, 2.5])
def test_a_strength_outside_0_to_2_is_an_input_error(restorer, strength):
    with pytest.raises(InputError, match="--strength must be in"):
        restorer.with_options(strength=strength)


@pytest.mark.parametrize(("count", "batch", "overlap"), [(1, 5, 2), (6, 5, 2), (13, 5, 2), (9, 9, 4)])
def test_streams_return_one_output_per_input_frame(restorer, count, batch, overlap):
    stream = restorer.with_options(batch_size=batch, overlap=overlap)
    assert len(list(stream.stream(list(_frames(count, 16, 16))))) == count


def test_batches_equal_the_whole_clip_where_they_do_not_overlap(restorer):
    """Frames outside overlaps come from exactly one batch: the same as restoring it alone."""
    frames = _frames(10, 16, 16)
    split = restorer.with_options(batch_size=5, overlap=0)
    out = split.restore(frames)
    np.testing.assert_allclose(out[:5], split.restore(frames[:5]), atol=1e-6)
    second = split.with_options(seed=split.options.seed + 5).restore(frames[5:])
    np.testing.assert_allclose(out[5:], second, atol=1e-6)


def test_overlaps_are_cross_faded_between_the_two_batches(restorer):
    frames = _frames(8, 16, 16)
    r = restorer.with_options(batch_size=5, overlap=2)
    batches = plan_batches(8, 5, 2)
    assert [(b.start, b.stop, b.blend) for b in batches] == [(0, 5, 0), (3, 8, 2)]
    out = r.restore(frames)
    a = r.restore(frames[0:5])
    b = r.with_options(seed=r.options.seed + 3).restore(frames[3:8])  # batch seed: seed + start
    weights = np.array([1 / 3, 2 / 3], np.float32)[:, None, None, None]
    np.testing.assert_allclose(out[:3], a[:3], atol=1e-6)
    np.testing.assert_allclose(out[3:5], a[3:5] * (1 - weights) + b[:2] * weights, atol=1e-5)
    np.testing.assert_allclose(out[5:], b[2:], atol=1e-6)


def test_streaming_reads_only_what_the_current_batch_needs(restorer):
    consumed = []

    def frames():
        for index, frame in enumerate(_frames(20, 16, 16)):
            consumed.append(index)
            yield frame

    stream = restorer.with_options(batch_size=5, overlap=2).stream(frames(), num_frames=20)
    next(stream)
    assert len(consumed) == 5


def test_prepended_frames_are_removed(restorer):
    frames = _frames(6, 16, 16)
    assert restorer.with_options(prepend=3).restore(frames).shape == (6, 16, 16, 3)


def test_a_stream_shorter_than_announced_is_an_input_error(restorer):
    with pytest.raises(InputError, match="ended after 3 frames"):
        list(restorer.stream(iter(_frames(3, 16, 16)), num_frames=9))


def test_frames_of_changing_size_are_an_input_error(restorer):
    frames = [*_frames(2, 16, 16), *_frames(1, 16, 24)]
    with pytest.raises(InputError, match="share a size"):
        list(restorer.stream(frames))


def test_guidance_without_a_negative_prompt_is_explained(tmp_path):
    from model_fixtures import write_tiny_model

    folder = write_tiny_model(tmp_path / "m", negative=False)
    restorer = Restorer.from_pretrained(folder, device="cpu", cfg_scale=2.0)
    with pytest.raises(InputError, match="negative prompt"):
        restorer.restore(_frames(1, 16, 16))


def test_the_models_own_colour_correction_applies_unless_options_name_one(tiny_model, tmp_path):
    from model_fixtures import write_tiny_model

    plain = write_tiny_model(tmp_path / "m", color_correction="none")  # tiny_model's weights
    wavelet_model = Restorer.from_pretrained(tiny_model, device="cpu", scale=2)
    none_model = Restorer.from_pretrained(plain, device="cpu", scale=2)
    assert (wavelet_model.color_correction, none_model.color_correction) == ("wavelet", "none")
    frames = _frames(1, 16, 24)
    own, corrected = none_model.restore(frames), wavelet_model.restore(frames)
    assert np.abs(own - corrected).max() > 1e-2  # the correction changes this output
    np.testing.assert_array_equal(own, wavelet_model.with_options(color="none").restore(frames))
    np.testing.assert_array_equal(corrected,
                                  none_model.with_options(color="wavelet").restore(frames))


def test_loading_a_vae_file_as_dit_names_the_mix_up(tiny_model):
    with pytest.raises(CheckpointError, match="not a DiT"):
        load_dit(tiny_model / "vae.safetensors", torch.float32)
    with pytest.raises(CheckpointError, match="not a VAE"):
        load_vae(tiny_model / "dit.safetensors", torch.float32)


def test_networks_load_exactly_the_stored_numbers(tiny_model):
    from safetensors.torch import load_file

    stored = load_file(tiny_model / "dit.safetensors")
    loaded = load_dit(tiny_model / "dit.safetensors", torch.float32).state_dict()
    assert all(torch.equal(stored[k], loaded[k]) for k in stored)


def test_without_a_bundled_model_the_error_says_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.setattr("seedvr2.pipeline.models.bundled_model_dir", lambda: tmp_path / "none")
    with pytest.raises(InputError, match="pass model with a preset"):
        default_model()


def test_compile_flag_compiles_each_network_once(tiny_model):
    from seedvr2.pipeline.compiling import compile_networks, is_compiled

    compiled = Restorer.from_pretrained(tiny_model, device="cpu", compile=True)
    dit, vae = compiled.model.dit, compiled.model.vae
    assert all(is_compiled(m) for m in (*dit.blocks, vae.encoder, vae.decoder))
    assert compile_networks(dit, vae) == 0  # with_options and replicas reuse the compiled modules
    plain = Restorer.from_pretrained(tiny_model, device="cpu")
    assert not is_compiled(plain.model.dit.blocks[0])
