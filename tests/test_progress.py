"""Progress inside a batch, prompt interrupts and cancelling, and stream() input types."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from media_fixtures import pattern, write_video
from process_support import default_sigint
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.pipeline import Cancelled, VAETiling

FRAMES = np.random.default_rng(0).integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def restorer(tiny_model) -> Restorer:
    return Restorer.from_pretrained(tiny_model, device="cpu", batch_size=5)


def test_cli_shows_progress_inside_a_single_batch(tiny_model, tmp_path, capsys):
    source = write_video(tmp_path / "in.mp4", pattern(5, 32, 48), fps=25)
    out = tmp_path / "out.mp4"
    assert main(["restore", str(source), "-o", str(out), "--model", str(tiny_model),
                 "--device", "cpu", "-b", "5"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    states = re.split(r"[\r\n]", captured.err)
    inside = [float(m[1]) for s in states if (m := re.search(r"([\d.]+)/5 frames, dit \d+/\d+", s))]
    assert any(0 < position < 5 for position in inside)  # moved during the DiT, before any frame
    assert any("(planned)" in s for s in states)  # an ETA before any measured work
    assert re.search(r"loaded model .* in [\d.]+ s", captured.err)
    assert f"restored 1 file(s) -> {out}, 5 frame(s)" in captured.out


def test_progress_events_follow_the_phases_and_units(restorer):
    events = []
    tiled = restorer.with_options(scale=4, tiling=VAETiling(encode_tile=64, decode_tile=64, overlap=16))
    tiled.on_progress = events.append
    tiled.restore(FRAMES)
    assert [e.phase for e in events] == sorted((e.phase for e in events), key=["encode", "dit", "decode"].index)
    finals = {e.phase: (e.done, e.total) for e in events}
    assert finals["dit"] == (len(restorer.model.dit.blocks),) * 2
    assert finals["encode"][0] == finals["encode"][1] > 1  # tiles x chunks, all reported
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1)
    assert {e.frames for e in events} == {5}


def test_cancel_stops_within_a_dit_block_and_can_be_cleared(restorer):
    events = []

    def listen(event):
        events.append(event)
        if event.phase == "dit" and event.done == 1:
            restorer.cancel()

    restorer.on_progress = listen
    try:
        with pytest.raises(Cancelled):
            restorer.restore(FRAMES)
        assert (events[-1].phase, events[-1].done) == ("dit", 1)  # no later block ran
        restorer.clear_cancel()
        restorer.on_progress = None
        assert restorer.restore(FRAMES).shape == (5, 32, 48, 3)
    finally:
        restorer.clear_cancel()
        restorer.on_progress = None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_stream_takes_the_integer_frames_restore_takes(restorer, dtype):
    frames = (FRAMES.astype(np.float64) / 255 * np.iinfo(dtype).max).astype(dtype)
    streamed = np.stack(list(restorer.stream(iter(frames), num_frames=len(frames))))
    np.testing.assert_array_equal(streamed, restorer.restore(frames))
    assert streamed.dtype == np.float32 and 0.05 < streamed.mean() < 0.95


def test_ctrl_c_inside_a_long_batch_exits_within_10_s(tmp_path):
    """The bundled model at 720p output: one batch runs for many minutes uninterrupted."""
    source = write_video(tmp_path / "in.mp4", pattern(9, 360, 640), fps=25)
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "seedvr2", "restore", str(source), "-o", str(out),
               "--scale", "2", "-b", "9", "--device", "cpu"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_sigint)  # fmt: skip
    seen = b""
    try:
        while b"encode 0/" not in seen:  # the batch has started
            chunk = os.read(process.stderr.fileno(), 4096)
            assert chunk, seen.decode(errors="replace")
            seen += chunk
        time.sleep(2)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
        latency = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 130
    assert latency < 10
    assert "interrupted; run the same command to resume (0 frame(s) kept)" in rest.decode()
    assert not out.exists()
