"""Trimming the input: ``--start``, ``--duration`` as times, ``--frames``."""

from __future__ import annotations

import pytest

from media_fixtures import pattern, write_video
from seedvr2.cli import main
from seedvr2.errors import InputError
from seedvr2.media import open_media
from seedvr2.pipeline import parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12", 12.0), ("1.5", 1.5), (".25", 0.25), ("1:30", 90.0), ("01:02:03.5", 3723.5),
     ("0:00.2", 0.2), ("90:00", 5400.0)],
)  # fmt: skip
def test_times_in_seconds_or_clock_form(text, seconds):
    assert parse_time(text, "--start") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1", "1:2:3:4", "1:60", "1:75:00", "1,5", "1h"])
def test_bad_times_name_the_option(text):
    with pytest.raises(InputError, match="--duration"):
        parse_time(text, "--duration")


def test_cli_trims_by_time_and_by_frames(tiny_model, tmp_path, capsys):
    source = write_video(tmp_path / "in.mp4", pattern(20, 16, 24), fps=25)
    base = ["restore", str(source), "--model", str(tiny_model), "--device", "cpu", "-q", "-b", "5"]
    timed = tmp_path / "timed.mp4"
    assert main([*base, "-o", str(timed), "--start", "0:00.2", "--duration", "00:00:00.2"]) == 0
    assert open_media(timed).info.frame_count == 5
    counted = tmp_path / "counted.mp4"
    assert main([*base, "-o", str(counted), "--frames", "3"]) == 0
    assert open_media(counted).info.frame_count == 3
    with pytest.raises(SystemExit) as exited:  # a usage error, before the model loads
        main([*base, "-o", str(tmp_path / "bad.mp4"), "--start", "1:99"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exited.value.code == 2 and error.startswith("seedvr2 restore: error: --start '1:99'")
