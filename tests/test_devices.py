"""Several devices restoring the batches of one clip in parallel (``cpu,cpu`` here)."""

from __future__ import annotations

import numpy as np
import pytest

from media_fixtures import pattern, write_video
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.media import read_frames


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:  # 12 frames (16, 24, 3) in [0, 1]
    return list(pattern(12, 16, 24).astype(np.float32) / 255)


def test_two_devices_give_the_one_device_frames(tiny_model, clip):
    one = Restorer.from_pretrained(tiny_model, device="cpu", batch_size=5, overlap=2)
    two = Restorer.from_pretrained(tiny_model, devices=("cpu", "cpu"), batch_size=5, overlap=2)
    assert len(two.devices) == 2 and two.replicas[0].model.dit is not two.model.dit
    assert np.array_equal(np.stack(list(two.stream(clip))), np.stack(list(one.stream(clip))))
    assert two.replicas[0].phase_seconds["dit"] > 0  # the second device did restore batches


@pytest.mark.parametrize("count", [1, 2, 3])
def test_prepended_frames_are_removed_on_every_device_count(tiny_model, clip, count):
    restorer = Restorer.from_pretrained(tiny_model, devices=("cpu",) * count, batch_size=5,
                                        overlap=1, prepend=3)  # fmt: skip
    single = Restorer.from_pretrained(tiny_model, device="cpu", batch_size=5, overlap=1, prepend=3)
    frames = np.stack(list(restorer.stream(clip)))
    assert frames.shape == (12, 16, 24, 3)
    assert np.array_equal(frames, np.stack(list(single.stream(clip))))


def test_cli_devices_list(tiny_model, tmp_path, capsys):
    source = write_video(tmp_path / "in.mp4", pattern(7, 16, 24))
    base = ["restore", str(source), "--model", str(tiny_model), "-q", "-b", "5"]
    assert main([*base, "-o", str(tmp_path / "out.mp4"), "--devices", "cpu,cpu"]) == 0
    assert read_frames(tmp_path / "out.mp4").shape == (7, 16, 24, 3)
    with pytest.raises(SystemExit) as exited:  # a usage error, before the model loads
        main([*base, "-o", str(tmp_path / "bad.mp4"), "--devices", "cpu,tpu"])
    assert exited.value.code == 2 and "--devices 'tpu'" in capsys.readouterr().err
