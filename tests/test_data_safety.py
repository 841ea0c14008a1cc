"""Never lose or corrupt a user's data: overwrites, resume keys, damaged segments, re-runs, disk."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from media_fixtures import pattern, write_image, write_video
from model_fixtures import write_tiny_model
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.errors import InputError, OutputError
from seedvr2.media import read_frames
from seedvr2.media.atomic import claimed
from seedvr2.pipeline import Job, OutputSettings, jobs, plan_jobs, restore_file, run_jobs
from seedvr2.pipeline.batching import TemporalBatch
from seedvr2.pipeline.restorer import BatchOutput, StreamCursor
from seedvr2.pipeline.resume import WorkFolder, quantize
from seedvr2.weights.writing import write_atomically

FRAMES = 13


def _restorer(model: Path) -> Restorer:
    return Restorer.from_pretrained(model, device="cpu", batch_size=5, overlap=2, prepend=2)


@pytest.fixture
def model(tmp_path) -> Path:
    return write_tiny_model(tmp_path / "model", seed=0)


@pytest.fixture
def source(tmp_path) -> Path:
    frames = pattern(FRAMES, 24, 32)
    return write_video(tmp_path / "in.mkv", frames, codec="ffv1", pix_fmt="yuv444p")


class Batches:
    """Counts the batches a restorer restores; the batch starting at ``fail_at`` raises."""

    def __init__(self, restorer: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.starts: list[int] = []
        self.fail_at: int | None = None
        restore = restorer._restore_frames

        def spy(clip, plan, start, *rest):
            if start == self.fail_at:
                raise RuntimeError("simulated crash")
            self.starts.append(start)
            return restore(clip, plan, start, *rest)

        monkeypatch.setattr(restorer, "_restore_frames", spy)
        monkeypatch.setattr(jobs, "SEGMENT_FRAMES", 1)  # one segment per batch

    def crash(self, restorer: Restorer, job: Job, settings: OutputSettings, at: int = 3) -> None:
        """Render until batch ``at``, which fails; the finished segments stay."""
        self.fail_at = restorer.plan_batches(FRAMES + 2)[at].start
        with pytest.raises(RuntimeError, match="simulated"):
            restore_file(restorer, job, settings=settings)
        self.fail_at = None
        self.starts.clear()


def _segments(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.seedvr2-*/*.npz"))


# -- overwriting ---------------------------------------------------------------------------


def test_overwriting_a_frames_folder_never_deletes_files_it_did_not_write(model, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    source = write_video(folder / "clip.mp4", pattern(3, 16, 16))
    notes = folder / "notes.txt"
    notes.write_text("mine")
    restorer = _restorer(model)
    frames = OutputSettings(frames_folder=True, overwrite=True)
    with pytest.raises(InputError, match="folder holding the input"):
        restore_file(restorer, Job(source, folder), settings=frames)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds files seedvr2 did not write"):
        restore_file(restorer, Job(source, other), settings=frames)
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "notes.txt"]
    assert notes.read_text() == "mine" and (other / "keep.txt").read_text() == "mine"
    assert len(list(other.iterdir())) == 1
    # a frames folder this tool wrote is replaced, with -y only
    out = tmp_path / "frames"
    args = ["restore", str(source), "-o", str(out), "--model", str(model), "--device", "cpu", "-q",
            "--codec", "png"]  # fmt: skip
    assert main(args) == 0
    first = sorted(p.name for p in out.iterdir())
    assert main(args) == 1  # exists
    assert main([*args, "-y"]) == 0
    assert sorted(p.name for p in out.iterdir()) == first
    (out / "added.txt").write_text("mine")  # the user adds a file: never replaced again
    assert main([*args, "-y"]) == 1
    assert (out / "added.txt").read_text() == "mine"


def test_an_output_may_not_replace_another_jobs_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", pattern(1, 8, 8)[0], "rgb24")
    write_image(folder / "a.tif", pattern(1, 8, 8)[0], "rgb24")
    beside = OutputSettings(suffix="", image_format=".png")  # a.tif -> in/a.png, an input
    with pytest.raises(InputError, match=r"a.tif: the output .*a.png would replace the input"):
        plan_jobs([str(folder / "a.tif"), str(folder / "a.png")], None, beside)
    with pytest.raises(InputError, match="is an input folder"):
        plan_jobs([str(folder)], str(folder), OutputSettings())


# -- re-runs into folders near the inputs --------------------------------------------------


def test_reruns_never_take_earlier_outputs_as_inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_image(folder / "a.png", pattern(1, 8, 8)[0], "rgb24")
    write_image(folder / "sub" / "b.png", pattern(1, 8, 8)[0], "rgb24")
    inside = folder / "restored"
    settings = OutputSettings()
    first = plan_jobs([str(folder)], str(inside), settings, recursive=True)
    for job in first:  # as a finished run leaves them
        job.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(job.source, job.output)
    again = plan_jobs([str(folder)], str(inside), settings, recursive=True)
    assert [j.source for j in again] == [j.source for j in first]
    glob_again = plan_jobs([f"{folder}/**/*.png"], str(inside), settings)
    assert sorted(j.source.name for j in glob_again) == ["a.png", "b.png"]
    # outputs beside their inputs carry the suffix
    beside = plan_jobs([str(folder)], None, settings)
    shutil.copy(folder / "a.png", beside[0].output)
    assert [j.source for j in plan_jobs([str(folder)], None, settings)] == [folder / "a.png"]


def test_globstar_does_not_follow_linked_folders(tmp_path):
    folder = tmp_path / "in"
    (folder / "deep").mkdir(parents=True)
    write_image(folder / "deep" / "a.png", pattern(1, 8, 8)[0], "rgb24")
    (folder / "deep" / "loop").symlink_to(folder, target_is_directory=True)  # followed: 40 deep
    began = time.monotonic()
    found = plan_jobs([f"{folder}/**/*.png"], str(tmp_path / "out"), OutputSettings())
    assert [j.source for j in found] == [folder / "deep" / "a.png"]
    found = plan_jobs([str(folder)], str(tmp_path / "out"), OutputSettings(), recursive=True)
    assert [j.source for j in found] == [folder / "deep" / "a.png"]
    assert time.monotonic() - began < 5


# -- resume --------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "ffv1"])
def test_same_command_same_bytes_fresh_or_resumed(model, source, tmp_path, monkeypatch, codec):
    restorer = _restorer(model)
    batches = Batches(restorer, monkeypatch)
    settings = OutputSettings(codec=codec)
    suffix = jobs.CONTAINER_FOR_CODEC[codec]
    first, second = tmp_path / f"first{suffix}", tmp_path / f"second{suffix}"
    restore_file(restorer, Job(source, first), settings=settings)
    restore_file(restorer, Job(source, second), settings=settings)
    assert first.read_bytes() == second.read_bytes()
    resumed = tmp_path / f"resumed{suffix}"
    batches.crash(restorer, Job(source, resumed), settings)
    assert len(_segments(resumed)) == 3
    restore_file(restorer, Job(source, resumed), settings=settings)
    assert len(batches.starts) == len(restorer.plan_batches(FRAMES + 2)) - 3
    assert resumed.read_bytes() == first.read_bytes()


def test_resume_never_reuses_frames_of_weights_changed_in_place(model, source, tmp_path,
                                                                monkeypatch):  # fmt: skip
    settings = OutputSettings(codec="ffv1")
    out = tmp_path / "out.mkv"
    old = _restorer(model)
    Batches(old, monkeypatch).crash(old, Job(source, out), settings)
    assert _segments(out)
    other = write_tiny_model(tmp_path / "other", seed=1)
    for name in ("dit", "vae", "pos_emb", "neg_emb"):  # same paths, same sizes, new numbers
        name += ".safetensors"
        (model / name).write_bytes((other / name).read_bytes())
    new = _restorer(model)
    batches = Batches(new, monkeypatch)
    restore_file(new, Job(source, out), settings=settings)
    assert len(batches.starts) == len(new.plan_batches(FRAMES + 2))  # nothing reused
    fresh = tmp_path / "fresh.mkv"
    restore_file(_restorer(other), Job(source, fresh), settings=settings)
    assert np.array_equal(read_frames(out), read_frames(fresh))
    assert not list(tmp_path.glob(".out.mkv.seedvr2-*"))  # the old work folder went too


def test_resume_key_covers_input_content_and_settings(model, source, tmp_path, monkeypatch):
    restorer = _restorer(model)
    out = tmp_path / "out.mkv"
    key = WorkFolder.for_render(out, jobs.render_key(restorer, source, None)).path
    stat = source.stat()
    data = bytearray(source.read_bytes())
    data[-1] ^= 1  # same size, same modification time, other bytes
    source.write_bytes(bytes(data))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert WorkFolder.for_render(out, jobs.render_key(restorer, source, None)).path != key
    seeded = restorer.with_options(seed=1)
    assert WorkFolder.for_render(out, jobs.render_key(seeded, source, None)).path != key


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong frames", "wrong size"])
def test_a_damaged_segment_is_rendered_again_with_a_warning(model, source, tmp_path, monkeypatch,
                                                            caplog, damage):  # fmt: skip
    restorer = _restorer(model)
    batches = Batches(restorer, monkeypatch)
    settings = OutputSettings(codec="ffv1")
    whole = tmp_path / "whole.mkv"
    restore_file(restorer, Job(source, whole), settings=settings)
    out = tmp_path / "out.mkv"
    batches.crash(restorer, Job(source, out), settings)
    segments = _segments(out)
    second = segments[1]
    if damage == "truncate":
        second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])
    elif damage == "garbage":
        second.write_bytes(os.urandom(second.stat().st_size))
    else:  # a well-formed file that does not fit the plan
        with np.load(segments[0]) as data:
            arrays = dict(data)
        if damage == "wrong frames":
            arrays["count"] = np.int64(arrays["count"] - 1)
            arrays["pts"] = arrays["pts"][:-1]
        else:
            arrays["pending"] = arrays["pending"][..., :-1]
        with open(second, "wb") as file:
            np.savez(file, **(arrays | {"next_batch": np.int64(2)}))
    with caplog.at_level(logging.WARNING):
        restore_file(restorer, Job(source, out), settings=settings)
    assert "discarding segment 000001-000002.npz" in caplog.text
    assert len(batches.starts) == len(restorer.plan_batches(FRAMES + 2)) - 1
    assert read_frames(out).tobytes() == read_frames(whole).tobytes()


def test_a_folder_job_reports_a_failing_file_and_goes_on(model, tmp_path, monkeypatch):
    restorer = _restorer(model)
    good = write_image(tmp_path / "good.png", pattern(1, 16, 16)[0], "rgb24")
    bad = write_image(tmp_path / "bad.png", pattern(1, 16, 16)[0], "rgb24")
    restore, calls = restorer._restore_frames, []

    def failing_once(clip, plan, start, *rest):
        calls.append(start)
        if len(calls) == 1:
            raise ValueError("an unforeseen failure")
        return restore(clip, plan, start, *rest)

    monkeypatch.setattr(restorer, "_restore_frames", failing_once)
    results = run_jobs(restorer, [Job(bad, tmp_path / "o_bad.png"), Job(good, tmp_path / "o.png")])
    assert [r.status for r in results] == ["failed", "done"]
    assert "ValueError: an unforeseen failure" in results[0].message
    assert (tmp_path / "o.png").is_file() and not (tmp_path / "o_bad.png").exists()


# -- disk ----------------------------------------------------------------------------------


def test_segments_are_stored_compactly_and_exactly(tmp_path):
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255
    frame = F.interpolate(photo, scale_factor=2, mode="bicubic").clamp(0, 1)[0]  # (3, H, W)
    frames = [quantize(frame.permute(1, 2, 0).numpy() * (1 - 0.01 * i)) for i in range(4)]
    work = WorkFolder(tmp_path / "work")
    work.save(0, frames, [0, 1, 2, 3], StreamCursor(1, torch.zeros(0, 3, 1024, 1024)))
    (segment,) = work.path.glob("*.npz")
    assert segment.stat().st_size < 0.75 * sum(f.nbytes for f in frames)  # 0.66 measured
    layout = [BatchOutput(TemporalBatch(0, 4, 0), 0, 4)]
    (loaded,) = work.segments(layout, (1024, 1024, 3))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.frames, frames))


def test_too_little_disk_space_is_refused_before_any_work(model, source, tmp_path, monkeypatch):
    restorer = _restorer(model)
    batches = Batches(restorer, monkeypatch)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(OutputError, match="needs about .* GB free"):
        restore_file(restorer, Job(source, tmp_path / "out.mkv"), settings=OutputSettings())
    assert batches.starts == [] and not list(tmp_path.glob(".out.mkv*"))


def test_a_full_disk_mid_render_is_one_error_and_leaves_no_partial_segment(model, source, tmp_path,
                                                                            monkeypatch):  # fmt: skip
    restorer = _restorer(model)
    Batches(restorer, monkeypatch)
    saved = WorkFolder.save

    def full_on_third(self, first, *args):
        if first == 2:
            np.savez = _raise_enospc
        try:
            return saved(self, first, *args)
        finally:
            np.savez = real_savez

    real_savez = np.savez
    monkeypatch.setattr(WorkFolder, "save", full_on_third)
    out = tmp_path / "out.mkv"
    with pytest.raises(OutputError, match="No space left on device"):
        restore_file(restorer, Job(source, out), settings=OutputSettings(codec="ffv1"))
    assert len(_segments(out)) == 2
    assert not list(tmp_path.glob(".out.mkv.seedvr2-*/.*partial"))
    assert not out.exists()


def _raise_enospc(*_args, **_kwargs):
    raise OSError(28, "No space left on device")


def test_leftovers_of_killed_runs_are_cleaned_and_nothing_else(model, source, tmp_path):
    out = tmp_path / "out.mkv"
    stale = tmp_path / f".out.mkv.seedvr2-{'ab' * 12}"
    stale.mkdir()
    (stale / "000000-000001.npz").write_bytes(b"old")
    partial = tmp_path / ".out.mkv.0123abcd.partial.mkv"
    partial.write_bytes(b"half")
    unrelated = [tmp_path / ".out.mkv.notes", tmp_path / ".out.mkv.seedvr2-mine", tmp_path / ".x"]
    for path in unrelated:
        path.write_text("mine")
    restore_file(_restorer(model), Job(source, out), settings=OutputSettings(codec="ffv1"))
    assert out.is_file() and not stale.exists() and not partial.exists()
    assert all(path.read_text() == "mine" for path in unrelated)
    assert not (tmp_path / ".out.mkv.seedvr2-lock").exists()


def test_two_runs_never_write_one_output_at_once(model, source, tmp_path):
    out = tmp_path / "out.mkv"
    with claimed(out), pytest.raises(OutputError, match="another seedvr2 run is writing it"):
        restore_file(_restorer(model), Job(source, out), settings=OutputSettings(codec="ffv1"))
    assert not out.exists()


def test_a_weights_file_is_replaced_whole_or_not_at_all(tmp_path, umask_002):
    target = tmp_path / "dit.safetensors"
    target.write_bytes(b"the old weights")

    def killed(temp: Path) -> None:
        temp.write_bytes(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, killed)
    assert target.read_bytes() == b"the old weights" and os.listdir(tmp_path) == [target.name]
    write_atomically(target, lambda temp: (temp.write_bytes(b"new"), temp.chmod(0o600)))
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == [target.name]
    assert stat.S_IMODE(target.stat().st_mode) == umask_002  # the writer's private mode undone
