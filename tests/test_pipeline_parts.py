"""Sizing, colour correction and temporal batching of the restoration pipeline."""

from __future__ import annotations

import pytest
import torch

from seedvr2.errors import InputError
from seedvr2.pipeline.batching import crossfade_weights, pad_frames, pad_to_4n1, plan_batches
from seedvr2.pipeline.color import (
    color_correct,
    lab_to_rgb,
    rgb_to_lab,
    wavelet_low,
    wavelet_transfer,
)
from seedvr2.pipeline.sizing import crop_output, plan_size, resize_and_pad


@pytest.mark.parametrize(
    ("source", "kwargs", "output", "padded"),
    [
        ((120, 212), dict(scale=2), (240, 424), (240, 432)),
        ((144, 176), dict(resolution=720), (720, 880), (720, 880)),
        ((272, 640), dict(scale=4), (1088, 2560), (1088, 2560)),
        ((121, 213), dict(scale=1), (121, 213), (128, 224)),
        ((720, 1280), dict(resolution=1080, max_side=1280), (720, 1280), (720, 1280)),
    ],
)
def test_plan_size(source, kwargs, output, padded) -> None:
    plan = plan_size(source, **kwargs)
    assert plan.output == output and plan.padded == padded
    assert plan.padded[0] % 16 == 0 and plan.padded[1] % 16 == 0


def test_plan_size_rejects_bad_requests() -> None:
    with pytest.raises(InputError, match="either"):
        plan_size((10, 10), resolution=64, scale=2)
    with pytest.raises(InputError, match="positive"):
        plan_size((10, 10), scale=-1)


def test_resize_pad_crop_keeps_every_pixel() -> None:
    plan = plan_size((30, 50), scale=1)
    frames = torch.rand(2, 3, 30, 50)
    padded = resize_and_pad(frames, plan)
    assert padded.shape == (2, 3, 32, 64)
    assert torch.equal(crop_output(padded, plan), frames)
    assert torch.equal(padded[..., 31, :50], frames[..., 29, :])  # edge replicated


def test_wavelet_low_is_smooth_and_keeps_the_mean() -> None:
    x = torch.rand(1, 3, 64, 64)
    low = wavelet_low(x)
    assert low.std() < x.std() / 4
    assert torch.allclose(low.mean((2, 3)), x.mean((2, 3)), atol=0.02)


def test_wavelet_transfer_is_content_highs_plus_reference_lows() -> None:
    """Computed with one pyramid (the blur is linear): the same as the two-pyramid definition."""
    content, reference = torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56)
    expected = content - wavelet_low(content) + wavelet_low(reference)
    assert torch.allclose(wavelet_transfer(content, reference), expected, atol=1e-6)


@pytest.mark.parametrize("method", ["wavelet", "adain", "lab"])
def test_color_correction_moves_colour_to_reference(method: str) -> None:
    torch.manual_seed(0)
    reference = torch.rand(2, 3, 48, 48) * 0.5 + 0.25
    tinted = (reference + torch.tensor([0.2, -0.1, 0.05])[:, None, None]).clamp(0, 1)
    fixed = color_correct(tinted, reference, method)
    before = (tinted.mean((0, 2, 3)) - reference.mean((0, 2, 3))).abs().max()
    after = (fixed.mean((0, 2, 3)) - reference.mean((0, 2, 3))).abs().max()
    assert after < before / 4


def test_color_none_and_unknown() -> None:
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(color_correct(x, x * 0, "none"), x)
    with pytest.raises(InputError, match="unknown colour correction"):
        color_correct(x, x, "hsv")


def test_lab_round_trip() -> None:
    rgb = torch.rand(2, 3, 16, 16)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)


def test_pad_to_4n1() -> None:
    assert [pad_to_4n1(n) for n in range(1, 11)] == [1, 5, 5, 5, 5, 9, 9, 9, 9, 13]


@pytest.mark.parametrize("frames", [1, 4, 21, 50, 101, 250])
@pytest.mark.parametrize(("batch", "overlap"), [(5, 0), (21, 4), (33, 1), (9, 8)])
def test_batches_cover_all_frames_and_overlap_as_asked(frames, batch, overlap) -> None:
    batches = plan_batches(frames, batch, overlap)
    assert batches[0].start == 0 and batches[-1].stop == frames
    for prev, nxt in zip(batches, batches[1:]):
        assert nxt.start == prev.stop - nxt.blend
        assert nxt.blend >= overlap
        assert nxt.stop > prev.stop
    assert all(b.length <= batch for b in batches)
    if frames >= batch:
        assert all(b.length == batch for b in batches)  # uniform, no tiny last batch


def test_batches_never_straddle_scene_cuts() -> None:
    batches = plan_batches(60, 9, overlap=2, cuts=(17, 40))
    for b in batches:
        assert not (b.start < 17 < b.stop) and not (b.start < 40 < b.stop)
    assert {b.start for b in batches if b.blend == 0} == {0, 17, 40}


@pytest.mark.parametrize("n", range(1, 9))
def test_crossfade_weights_strictly_inside_unit_interval(n: int) -> None:
    w = crossfade_weights(n)
    assert w.shape == (n,) and bool((w > 0).all() and (w < 1).all())
    assert bool((w[1:] > w[:-1]).all())


def test_batch_arguments_are_checked() -> None:
    with pytest.raises(InputError, match="4n\\+1"):
        plan_batches(10, 6)
    with pytest.raises(InputError, match="overlap"):
        plan_batches(10, 5, overlap=5)


def test_pad_frames_repeats_last() -> None:
    x = torch.arange(3.0)[:, None]
    assert pad_frames(x, 5)[:, 0].tolist() == [0, 1, 2, 2, 2]
