"""The app's parts without a server: uploads judged by content, limits, requests, lazy Gradio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from media_fixtures import pattern, write_image, write_video
from seedvr2.app.runner import Request
from seedvr2.app.uploads import Limits, accept
from seedvr2.errors import InputError, SeedVR2Error


def test_uploads_are_judged_by_content_and_placed_under_our_names(tmp_path: Path):
    picture = write_image(tmp_path / "a.png", pattern(1, 16, 24)[0], "rgb24")
    film = write_video(tmp_path / "b.mkv", pattern(3, 16, 24))
    text = tmp_path / "c.mp4"
    text.write_text("plain words\n" * 40)
    job = tmp_path / "job"
    image = accept(picture, "../../holiday photo.mp4", job / "0", Limits())
    assert (image.path, image.info.kind, image.stem) == (job / "0" / "input.png", "image", "holiday_photo")
    video = accept(film, "clip.png", job / "1", Limits())
    assert (video.path, video.info.kind, video.frames) == (job / "1" / "input.mkv", "video", 3)
    with pytest.raises(InputError, match=r"^notes\.mp4 is not a video \(mp4, mkv, .*\) or an image"):
        accept(text, "notes.mp4", job / "2", Limits())
    assert sorted(p.name for p in job.rglob("*") if p.is_file()) == ["input.mkv", "input.png"]


def test_size_and_duration_limits_are_one_clear_line(tmp_path: Path):
    film = write_video(tmp_path / "b.mp4", pattern(50, 16, 24), fps=25)  # 2 s
    with pytest.raises(InputError, match=r"^b\.mp4 is 0\.00 MB; this server takes files up to "
                                         r"0\.00 MB: send a shorter or smaller file$"):  # fmt: skip
        accept(film, "b.mp4", tmp_path / "0", Limits(max_bytes=100))
    with pytest.raises(InputError, match=r"^b\.mp4 lasts 2 s; this server restores clips up to "
                                         r"1\.5 s: cut it shorter and send it again$"):  # fmt: skip
        accept(film, "b.mp4", tmp_path / "1", Limits(max_seconds=1.5))
    assert accept(film, "b.mp4", tmp_path / "2", Limits(10**6, 2.5)).frames == 50


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scale": 2.0, "resolution": 720}, "either a scale or a resolution"),
        ({}, "either a scale or a resolution"),
        ({"scale": -1.0}, "scale -1.0 must be above 0"),
        ({"scale": 2.0, "codec": "mpeg1"}, "codec 'mpeg1' is not one of"),
        ({"scale": 2.0, "codec": "ffv1", "crf": 20}, "crf applies to"),
        ({"scale": 2.0, "color": "sepia"}, "color 'sepia' is not one of"),
        ({"scale": 2.0, "strength": 2.5}, "strength must be in"),
    ],
)
def test_requests_are_checked_before_any_work(fields: dict, message: str):
    with pytest.raises(SeedVR2Error, match=message):
        Request("tiny", **fields)


def test_the_cli_and_the_app_import_without_gradio():
    code = ("import sys, seedvr2.cli, seedvr2.app; seedvr2.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio'))")  # fmt: skip
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": ""})  # fmt: skip
    assert out.stdout.strip() == "[]"
