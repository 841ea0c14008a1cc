"""Paired training data: real LQ clips matched to HQ by path, bad pairs refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seedvr2.errors import InputError
from seedvr2.train.config import load_config
from seedvr2.train.data import SampleKey, build_clip_dataset
from train_support import _pattern, tiny_config, write_config, write_image, write_video

LQ_COLOUR = np.array([40, 120, 200], dtype=np.uint8)


def _dataset(tmp_path: Path, folder: Path):
    cfg = tiny_config(folder, tmp_path / "out", data={"roots": [], "paired": [str(folder)]})
    return build_clip_dataset(load_config(write_config(tmp_path / "run.yaml", cfg)), 1, True)


def test_the_lq_of_a_pair_comes_from_its_lq_file(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    write_image(folder / "hq" / "shot.png", _pattern(1, 64, 64, 1)[0])
    write_image(folder / "lq" / "shot.jpg", np.broadcast_to(LQ_COLOUR, (32, 32, 3)))  # x2
    sample = _dataset(tmp_path, folder)[SampleKey(0, 0, 0, 1, 32, 32)]
    lq = (sample["lq"] + 1) / 2 * 255  # (c, f, h, w): the flat LQ file, not a degraded HQ crop
    assert np.abs(lq.numpy() - LQ_COLOUR.reshape(3, 1, 1, 1)).max() < 3
    assert sample["hq"].shape == (3, 1, 32, 32) and sample["hq"].std() > 0.1


def test_bad_pairs_are_refused_naming_each(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    write_video(folder / "hq" / "a.mp4", _pattern(9, 48, 64, 1))
    write_video(folder / "lq" / "a.mp4", _pattern(8, 24, 32, 1))  # one frame short
    write_image(folder / "hq" / "b.png", _pattern(1, 48, 48, 2)[0])  # no LQ partner
    write_image(folder / "hq" / "c.png", _pattern(1, 48, 48, 3)[0])
    write_image(folder / "lq" / "c.png", _pattern(1, 24, 16, 3)[0])  # x2 high, x3 wide
    write_image(folder / "hq" / "d.png", _pattern(1, 48, 48, 4)[0])
    write_image(folder / "lq" / "d.png", _pattern(1, 16, 16, 4)[0])  # a good x3 pair
    with pytest.raises(InputError, match="3 bad pair") as caught:
        _dataset(tmp_path, folder)
    message = str(caught.value)
    assert "a.mp4 (64x48, 9 frame(s)) and" in message and "8 frame(s)" in message
    assert "b.png has no partner" in message and "c.png (48x48" in message
    assert "d.png" not in message and "\n" not in message
