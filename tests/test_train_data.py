"""Training data: clip reading, crops, the clip schedule, per-sample determinism, rank splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seedvr2.errors import ConfigError, InputError
from seedvr2.media import read_frames
from seedvr2.train.config import DataConfig, Phase
from seedvr2.train.data import (
    AreaDegradation,
    BicubicDegradation,
    ClipDataset,
    SampleKey,
    StepSampler,
    build_degrader,
    crop_size,
    plan_shape,
)
from seedvr2.train.degrade import load_degradation_config
from seedvr2.train.sources import build_index, read_clip, read_manifest
from train_support import make_media, write_video


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media(tmp_path_factory.mktemp("media"))


def test_read_clip_seeks_to_the_exact_frames(tmp_path: Path) -> None:
    frames = (np.arange(40)[:, None, None, None] * 6 + np.zeros((1, 32, 32, 3))).astype(np.uint8)
    path = write_video(tmp_path / "ramp.mp4", frames, gop=8)  # keyframes at 0, 8, 16, ...
    entry = build_index((str(tmp_path),), None)[0]
    assert entry.frames == 40 and (entry.height, entry.width) == (32, 32)
    clip = read_clip(entry, 29, 5).numpy()
    assert np.array_equal(clip, read_frames(path)[29:34])
    with pytest.raises(InputError, match="outside"):
        read_clip(entry, 38, 5)


def test_folders_and_manifest_with_frame_ranges(media: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("# held-out tail excluded\n"
                        + json.dumps({"path": str(media / "a.mp4"), "frames": [2, 9]}) + "\n"
                        + f"{media / 'c.png'}\n")
    assert [i.frames for i in read_manifest(manifest)] == [(2, 9), (0, None)]
    entries = build_index((str(media),), str(manifest))
    assert [(Path(e.path).name, e.frames, e.first) for e in entries] == [
        ("a.mp4", 12, 0), ("b.mp4", 9, 0), ("c.png", 1, 0), ("a.mp4", 7, 2), ("c.png", 1, 0)]
    ranged = entries[3]
    assert np.array_equal(read_clip(ranged, 0, 3).numpy(), read_clip(entries[0], 2, 3).numpy())


def test_crop_sizes_keep_area_aspect_and_multiple() -> None:
    assert crop_size(256, 1.0, 16) == (256, 256)
    h, w = crop_size(256, 16 / 9, 16)
    assert h % 16 == 0 and w % 16 == 0 and abs(w / h - 16 / 9) < 0.1
    assert abs(h * w / 256**2 - 1) < 0.1


def test_schedule_grows_clips_with_the_step() -> None:
    phases = (Phase(frames=(1,), sizes=(32,)), Phase(start_step=10, frames=(5, 9), sizes=(64,)))
    early = {plan_shape(phases, 0, s, 0, 16) for s in range(10)}
    late = {plan_shape(phases, 0, s, 0, 16) for s in range(10, 40)}
    assert early == {(1, 32, 32)}
    assert {f for f, _, _ in late} == {5, 9} and {h for _, h, _ in late} == {64}
    assert plan_shape(phases, 0, 12, 1, 16) == plan_shape(phases, 0, 12, 1, 16)


def test_samples_depend_only_on_their_key(media: Path) -> None:
    dataset = ClipDataset(build_index((str(media),), None), seed=5, degrader=AreaDegradation(2))
    key = SampleKey(step=3, micro=0, index=1, frames=5, height=32, width=32)
    first, again = dataset[key], dataset[key]
    assert torch.equal(first["hq"], again["hq"]) and torch.equal(first["lq"], again["lq"])
    assert first["hq"].shape == first["lq"].shape == (3, 5, 32, 32)
    assert float(first["hq"].min()) >= -1 and float(first["hq"].max()) <= 1
    other = dataset[key._replace(index=2)]
    assert not torch.equal(first["hq"], other["hq"])


def test_ranks_split_the_global_batch(media: Path) -> None:
    phases = (Phase(frames=(1, 5), sizes=(32,)),)
    data = DataConfig(roots=(str(media),), batch_size=4, phases=phases)
    whole = list(StepSampler(data, 0, 0, 3, 2, rank=0, world_size=1, multiple=16))
    halves = [list(StepSampler(data, 0, 0, 3, 2, rank=r, world_size=2, multiple=16))
              for r in range(2)]
    assert [a + b for a, b in zip(*halves)] == whole
    resumed = list(StepSampler(data, 0, 2, 3, 2, rank=0, world_size=1, multiple=16))
    assert resumed == whole[4:]
    with pytest.raises(ConfigError, match="not divisible by 3"):
        StepSampler(data, 0, 0, 1, 1, rank=0, world_size=3, multiple=16)


def test_small_sources_are_upscaled_to_cover_the_crop(media: Path) -> None:
    dataset = ClipDataset(build_index((str(media),), None), seed=0, degrader=None)
    sample = dataset[SampleKey(0, 0, 0, 1, 64, 96)]
    assert sample["hq"].shape == (3, 1, 64, 96) and sample["lq"] is None
    batch = ClipDataset.collate([sample, dataset[SampleKey(0, 0, 1, 1, 64, 96)]])
    assert batch.hq.shape == (2, 3, 1, 64, 96) and batch.lq is None


def test_clips_longer_than_any_video_are_a_config_error(media: Path) -> None:
    dataset = ClipDataset(build_index((str(media),), None), seed=0, degrader=None)
    with pytest.raises(ConfigError, match="longest video has 12"):
        dataset[SampleKey(0, 0, 0, 13, 32, 32)]


def test_a_still_serves_clips_as_a_straight_pan(tmp_path: Path) -> None:
    """With ``still_motion``, frame f of a still's clip is frame 0's window moved by f times one
    integer velocity of at most ``still_motion`` px per axis, inside the still (barely larger
    than the path); velocities vary between clips; single frames are drawn as without it."""
    image = np.random.default_rng(0).integers(0, 256, (46, 54, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "still.png")
    entries = build_index((str(tmp_path),), None)
    dataset = ClipDataset(entries, seed=0, degrader=None, still_motion=3)
    velocities = set()
    for index in range(24):
        clip = dataset[SampleKey(0, 0, index, 5, 32, 40)]["hq"]  # (c, f, h, w) in [-1, 1]
        assert clip.shape == (3, 5, 32, 40)
        frames = np.round((clip.numpy() + 1) * 127.5).astype(np.uint8).transpose(1, 2, 3, 0)
        flipped = not np.all(np.lib.stride_tricks.sliding_window_view(image, (32, 40, 3))
                             == frames[0], axis=(-3, -2, -1)).any()  # clips flip half the time
        source = np.lib.stride_tricks.sliding_window_view(image[:, ::-1] if flipped else image,
                                                          (32, 40, 3))[:, :, 0]
        windows = [np.argwhere(np.all(source == frame, axis=(-3, -2, -1))) for frame in frames]
        assert all(len(found) == 1 for found in windows)  # each frame is one window of the still
        corners = np.stack([found[0] for found in windows])  # (f, 2) top, left
        steps = np.diff(corners, axis=0)
        assert (steps == steps[0]).all() and np.abs(steps).max() <= 3
        velocities.add(tuple(steps[0]))
    assert len(velocities) > 3
    still = ClipDataset(entries, seed=0, degrader=None)  # still_motion 0: single frames only
    with pytest.raises(ConfigError, match="longest video has 1"):
        still[SampleKey(0, 0, 0, 5, 32, 40)]
    single = SampleKey(0, 0, 0, 1, 32, 40)
    assert torch.equal(still[single]["hq"], dataset[single]["hq"])  # old caches' draws hold


def test_real_degradations_are_keyed_by_the_sample(media: Path) -> None:
    config = Path(__file__).parents[1] / "configs" / "degradations" / "realesrgan_video.yaml"
    with pytest.raises(ConfigError, match="data.scale 2 differs"):
        build_degrader(str(config), scale=2)
    dataset = ClipDataset(build_index((str(media),), None), seed=1,
                          degrader=build_degrader(str(config), scale=4))
    key = SampleKey(step=0, micro=0, index=0, frames=5, height=32, width=32)
    first, again = dataset[key], dataset[key]
    assert first["lq"].shape == (3, 5, 32, 32)  # degraded at 8x8, resized back
    assert torch.equal(first["lq"], again["lq"])
    assert not torch.equal(first["lq"], first["hq"])


def test_a_degradation_list_mixes_configs_and_scales(media: Path) -> None:
    configs = Path(__file__).parents[1] / "configs" / "degradations"
    heavy, broad = str(configs / "realesrgan_video.yaml"), str(configs / "broad_video.yaml")
    mixed = build_degrader((heavy, {"path": broad, "scale": 2}), scale=4)
    assert [c.config.scale for c in mixed.choices] == [4, 2]
    assert mixed.choices[1].config.first == load_degradation_config(broad).first
    video = torch.rand(3, 2, 32, 32)
    picked = {tuple(mixed(video, torch.Generator().manual_seed(s)).shape) for s in range(12)}
    assert picked == {(3, 2, 8, 8), (3, 2, 16, 16)}  # both entries are drawn
    dataset = ClipDataset(build_index((str(media),), None), seed=1, degrader=mixed)
    key = SampleKey(step=3, micro=0, index=0, frames=1, height=32, width=32)
    assert torch.equal(dataset[key]["lq"], dataset[key]["lq"])
    with pytest.raises(ConfigError, match="does not divide data.scale 4"):
        build_degrader(({"path": heavy, "scale": 3},), scale=4)
    with pytest.raises(ConfigError, match="unknown: \\['strength'\\]"):
        build_degrader(({"path": heavy, "strength": 2},), scale=4)
    with pytest.raises(ConfigError, match="empty list"):
        build_degrader((), scale=4)


def test_clean_entries_and_the_condition_restore_makes(media: Path) -> None:
    """A clean bicubic entry is the evaluation's down-scale, and the training condition is the
    LQ up-scaled as ``restore`` up-scales it (antialiased bicubic), not another kernel."""
    from seedvr2.eval.protocol import bicubic_down
    from seedvr2.pipeline.sizing import SizePlan, resize_and_pad

    mixed = build_degrader(({"clean": "bicubic", "scale": 2}, {"clean": "area", "scale": 4}),
                           scale=4)
    video = torch.round(torch.rand(3, 2, 32, 48) * 255) / 255
    small = mixed.choices[0](video, torch.Generator())
    expected = torch.from_numpy(bicubic_down(video.permute(1, 2, 3, 0).numpy(), 2))
    assert torch.equal(small.permute(1, 2, 3, 0), expected)  # (f, h, w, 3)
    assert tuple(mixed.choices[1](video, torch.Generator()).shape) == (3, 2, 8, 12)
    with pytest.raises(ConfigError, match="a clean entry is"):
        build_degrader(({"clean": "lanczos", "scale": 2},), scale=4)

    dataset = ClipDataset(build_index((str(media),), None), seed=1,
                          degrader=build_degrader(({"clean": "bicubic", "scale": 4},), scale=4))
    key = SampleKey(step=0, micro=0, index=0, frames=1, height=32, width=32)
    sample = dataset[key]
    lq = BicubicDegradation(4)(sample["hq"] / 2 + 0.5, torch.Generator())
    plan = SizePlan(source=(8, 8), output=(32, 32), padded=(32, 32))
    condition = resize_and_pad(lq.permute(1, 0, 2, 3), plan).permute(1, 0, 2, 3) * 2 - 1
    assert (sample["lq"] - condition).abs().max() < 1e-5
    # a DiT trained on plain-bicubic conditions (DiTConfig.condition_resize) gets them here too
    dataset.condition_resize = "bicubic"
    sharp = dataset[key]["lq"]
    condition = resize_and_pad(lq.permute(1, 0, 2, 3), plan, "bicubic").permute(1, 0, 2, 3)
    assert (sharp - (condition * 2 - 1)).abs().max() < 1e-5
    assert (sharp - sample["lq"]).abs().max() > 0.02
