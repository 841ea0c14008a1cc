"""Resumable video renders: segments survive a crash and give the uninterrupted output."""

from __future__ import annotations

import pytest
import torch

from media_fixtures import pattern, write_video
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.errors import OutOfMemory
from seedvr2.media import read_frames
from seedvr2.pipeline import Cancelled, Job, OutputSettings, jobs, restore_file

SETTINGS = OutputSettings(codec="ffv1")


@pytest.fixture(scope="module")
def restorer(tiny_model) -> Restorer:
    return Restorer.from_pretrained(tiny_model, device="cpu", batch_size=5, overlap=2, prepend=2)


@pytest.fixture
def source(tmp_path):
    return write_video(tmp_path / "in.mkv", pattern(13, 24, 32), codec="ffv1", pix_fmt="yuv444p")


@pytest.fixture
def counted(restorer, monkeypatch):
    """Batches restored, by start frame; restoring the batch at ``fail_at`` raises."""
    calls: dict = {"starts": [], "fail_at": None, "raise": RuntimeError}
    restore = restorer._restore_frames

    def spy(clip, plan, start, *rest):
        if start == calls["fail_at"]:
            raise calls["raise"]("simulated crash")
        calls["starts"].append(start)
        return restore(clip, plan, start, *rest)

    monkeypatch.setattr(restorer, "_restore_frames", spy)
    monkeypatch.setattr(jobs, "SEGMENT_FRAMES", 1)  # one segment per batch
    return calls


def _crash(restorer, counted, source, out, error=RuntimeError, match="simulated") -> list:
    """Render until the fourth batch, which fails; the finished segments are kept."""
    counted["fail_at"] = restorer.plan_batches(13 + 2)[3].start
    with pytest.raises(error, match=match):
        restore_file(restorer, Job(source, out), settings=SETTINGS)
    counted["fail_at"] = None
    assert not out.exists()
    return list(out.parent.glob(".out.mkv.seedvr2-*/*.npz"))


def test_an_interrupted_render_resumes_to_the_same_frames(restorer, counted, source, tmp_path):
    whole = tmp_path / "whole.mkv"
    restore_file(restorer, Job(source, whole), settings=SETTINGS)
    total = len(counted["starts"])
    out = tmp_path / "out.mkv"
    assert len(_crash(restorer, counted, source, out)) == 3
    counted["starts"].clear()
    result = restore_file(restorer, Job(source, out), settings=SETTINGS)
    assert len(counted["starts"]) == total - 3  # finished batches are not restored again
    assert result.frames == 13
    assert read_frames(out).tobytes() == read_frames(whole).tobytes()
    assert not list(tmp_path.glob(".out.mkv.seedvr2-*"))  # the work folder is gone


def test_no_resume_starts_over(restorer, counted, source, tmp_path):
    out = tmp_path / "out.mkv"
    _crash(restorer, counted, source, out)
    counted["starts"].clear()
    restore_file(restorer, Job(source, out), settings=OutputSettings(codec="ffv1", resume=False))
    assert len(counted["starts"]) == len(restorer.plan_batches(13 + 2))


def test_cli_no_resume_flag_renders(tiny_model, source, tmp_path):
    out = tmp_path / "cli.mkv"
    args = ["restore", str(source), "-o", str(out), "--model", str(tiny_model), "--device", "cpu"]
    assert main([*args, "-q", "-b", "5", "--no-resume"]) == 0
    assert read_frames(out).shape[0] == 13


def test_out_of_memory_names_the_settings_and_keeps_the_segments(restorer, counted, source,
                                                                 tmp_path):  # fmt: skip
    counted["raise"] = torch.OutOfMemoryError
    out = tmp_path / "out.mkv"
    kept = _crash(restorer, counted, source, out, OutOfMemory, "out of cpu memory")
    assert len(kept) == 3
    with pytest.raises(OutOfMemory) as caught:
        counted["fail_at"] = restorer.plan_batches(13 + 2)[3].start
        restore_file(restorer, Job(source, out), settings=SETTINGS)
    message = str(caught.value)
    assert "\n" not in message and "batch_size=1" in message  # named as the API's arguments
    assert "offload" not in message  # it changes nothing on the CPU
    assert "tiling.encode_tile=512 tiling.decode_tile=512" in message and "resumes" in message


def test_ctrl_c_keeps_segments_and_the_rerun_says_where_it_resumes(restorer, counted, source, tmp_path):
    out = tmp_path / "out.mkv"
    counted["raise"] = KeyboardInterrupt
    counted["fail_at"] = restorer.plan_batches(13 + 2)[3].start
    with pytest.raises(Cancelled) as stop:
        restore_file(restorer, Job(source, out), settings=SETTINGS)
    counted["fail_at"] = None
    assert stop.value.kept > 0
    resumed = []
    result = restore_file(restorer, Job(source, out), settings=SETTINGS,
                          on_resume=lambda job, frame, frames: resumed.append((frame, frames)))
    assert resumed == [(stop.value.kept, 13)]
    assert (result.frames, result.reused) == (13, stop.value.kept)
