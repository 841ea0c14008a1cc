"""Whole renders as users run them: killed and resumed, 10-bit, variable frame rate, side streams."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media_fixtures import (
    SUBTITLE_TEXT,
    luma_plane,
    packets,
    pattern,
    subtitle_texts,
    write_video,
)
from seedvr2.cli import main
from seedvr2.media import MediaWriter, open_media, read_frames

VFR_PTS = [0, 40, 100, 110, 200, 260, 300, 333, 420]  # milliseconds, irregular


def _restore_command(model: Path, source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "seedvr2", "restore", str(source), "-o", str(out),
            "--model", str(model), "--device", "cpu", "-b", "5", "--codec", "ffv1", "-q"]  # fmt: skip


def test_a_render_killed_midway_resumes_to_identical_frames(tiny_model, tmp_path):
    source = write_video(tmp_path / "long.mkv", pattern(110, 16, 16), codec="ffv1",
                         pix_fmt="yuv444p")  # fmt: skip
    reference = tmp_path / "reference.mkv"
    subprocess.run(_restore_command(tiny_model, source, reference), check=True, timeout=300)

    out = tmp_path / "killed.mkv"
    command = _restore_command(tiny_model, source, out)
    render = subprocess.Popen(command)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".killed.mkv.seedvr2-*/*.npz")):
        assert render.poll() is None, "the render ended before it wrote its first segment"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(render.pid, signal.SIGKILL)  # no cleanup handler runs: as a power cut
    render.wait()
    assert render.returncode == -signal.SIGKILL
    assert not out.exists()
    kept = list(tmp_path.glob(".killed.mkv.seedvr2-*/*.npz"))
    assert kept

    subprocess.run(command, check=True, timeout=300)
    assert np.array_equal(read_frames(out), read_frames(reference))
    assert not list(tmp_path.glob(".killed.mkv.seedvr2-*"))  # work folder removed when done


def test_ten_bit_gradient_keeps_ten_bit_values(tmp_path):
    ramp = np.repeat(np.linspace(0.1, 0.9, 256, dtype=np.float32)[None, :, None], 32, 0)
    source = tmp_path / "ramp10.mkv"
    with MediaWriter(source, codec="ffv1", pix_fmt="yuv420p10le") as writer:
        writer.write(np.repeat(ramp, 3, axis=2))
    out = tmp_path / "ramp_out.mkv"
    # the bundled model: a trained network keeps a smooth ramp smooth
    assert main(["restore", str(source), "-o", str(out), "--scale", "2", "--codec", "h265",
                 "--device", "cpu", "-q"]) == 0  # fmt: skip
    assert open_media(out).info.bit_depth == 10
    luma = luma_plane(out)[32]  # one row across the ramp
    assert luma.dtype == np.uint16 and len(np.unique(luma)) > 256
    assert np.mean(luma % 4 == 0) < 0.5  # 8-bit values shifted to 10 bits are all multiples of 4


def test_variable_frame_rate_keeps_every_timestamp(tiny_model, tmp_path):
    source = write_video(tmp_path / "vfr.mkv", pattern(len(VFR_PTS), 24, 32), pts=VFR_PTS,
                         time_base=Fraction(1, 1000))  # fmt: skip
    out = tmp_path / "vfr_out.mkv"
    assert main(["restore", str(source), "-o", str(out), "--model", str(tiny_model),
                 "--device", "cpu", "-b", "5", "-q"]) == 0  # fmt: skip
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        stamps = sorted(frame.pts * stream.time_base for frame in container.decode(stream))
    assert stamps == [Fraction(ms, 1000) for ms in VFR_PTS]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_audio_and_subtitles_survive_a_restore(tiny_model, tmp_path, suffix):
    source = write_video(tmp_path / "talk.mkv", pattern(10, 24, 32), audio="aac",
                         subtitles="subrip")  # fmt: skip
    out = tmp_path / f"talk_out{suffix}"
    assert main(["restore", str(source), "-o", str(out), "--model", str(tiny_model),
                 "--device", "cpu", "-q"]) == 0  # fmt: skip
    info = open_media(out).info
    assert info.has_audio and info.has_subtitles
    assert packets(out, "audio") == packets(source, "audio")
    assert subtitle_texts(out) == [SUBTITLE_TEXT]
