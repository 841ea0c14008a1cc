"""``torchrun --nproc-per-node 2 -m seedvr2 restore ... --sequence-parallel`` on the CPU (gloo)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from media_fixtures import pattern, write_video
from process_support import finalization_marks
from seedvr2.cli import main
from seedvr2.media import read_frames

# several batches (9 frames, 4 cross-faded), each in 2 VAE chunks (one per rank) and 2x2 tiles
SETTINGS = ["--device", "cpu", "--codec", "ffv1", "-b", "9", "--overlap", "4", "--scale", "2",
            "--encode-tile", "64", "--decode-tile", "64", "--tile-overlap", "16", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def _seedvr2(args: list[str], ranks: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m seedvr2 ARGS`` (ranks = 0) or the same under torchrun with ``ranks``."""
    launch = [sys.executable, "-m", "seedvr2"]
    if ranks:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc-per-node", str(ranks), "-m", "seedvr2"]
        args = [*args, "--sequence-parallel"]
    return subprocess.run([*launch, *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def _assert_same_output(a: Path, b: Path) -> None:
    """At most one 8-bit code apart, and at most 0.1 % of values differ at all."""
    first, second = (np.round(np.asarray(read_frames(p)) * 255).astype(int) for p in (a, b))
    assert first.shape == second.shape
    difference = np.abs(first - second)
    assert difference.max() <= 1 and (difference > 0).mean() <= 0.001, difference.max()


def test_two_ranks_write_what_one_process_writes(tiny_model: Path, tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mkv", pattern(17, 48, 64), codec="ffv1", pix_fmt="yuv444p")
    one, out = tmp_path / "one.mkv", tmp_path / "out"
    out.mkdir()
    assert _seedvr2(["restore", str(source), "-o", str(one), "--model", str(tiny_model),
                     *SETTINGS]).returncode == 0  # fmt: skip
    report = out / "report.json"
    done = _seedvr2(["restore", str(source), "-o", str(out / "two.mkv"), "--model",
                     str(tiny_model), "--report", str(report), *SETTINGS, "--swap-blocks", "2"],
                    ranks=2)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("restored 1 file(s) -> ") == 1 and ", 17 frame(s)" in done.stdout  # rank 0 alone
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "two.mkv"]
    _assert_same_output(one, out / "two.mkv")


def test_dry_run_shows_the_estimate_per_process_once(tiny_model: Path, tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mkv", pattern(9, 48, 64), codec="ffv1", pix_fmt="yuv444p")
    args = ["restore", str(source), "-o", str(tmp_path / "out.mkv"), "--model", str(tiny_model),
            "--dry-run", *SETTINGS]  # fmt: skip
    done = _seedvr2(args, ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("dry run: 1 job(s) on cpu in float32, per process of 2") == 1
    assert done.stdout.count("memory  about") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_ranks_end_without_the_interpreters_finalization(tiny_model: Path, tmp_path: Path):
    """gloo's threads may still release tensors as Python finalizes, which aborts the process:
    the ranks skip finalization (no atexit handler runs) and still flush what they printed."""
    source = write_video(tmp_path / "in.mkv", pattern(9, 48, 64), codec="ffv1", pix_fmt="yuv444p")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "seedvr2", "restore", str(source), "-o", str(tmp_path / "out.mkv"),
               "--model", str(tiny_model), "--dry-run", "--sequence-parallel", *SETTINGS]
    env = {**ENV, "PYTHONPATH": finalization_marks(tmp_path, ENV["PYTHONPATH"])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dry run: 1 job(s)" in done.stdout
    assert len(list(tmp_path.glob("finalized-*"))) == 1  # torchrun's own process, not the ranks


def test_main_returns_to_its_caller_under_torchruns_variables(tiny_model: Path, tmp_path):
    """Only the program (``entry``) ends a rank early: ``main`` returns to a caller in the same
    process (run in a child, so that a regression cannot end the test session itself)."""
    source = write_video(tmp_path / "in.mkv", pattern(5, 24, 32), codec="ffv1", pix_fmt="yuv444p")
    args = ["restore", str(source), "-o", str(tmp_path / "out.mkv"), "--model", str(tiny_model),
            *SETTINGS]  # fmt: skip
    code = f"from seedvr2.cli import main; print('main returned', main({args!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**ENV, "RANK": "0", "WORLD_SIZE": "1"}, timeout=300)  # fmt: skip
    assert "main returned 0" in done.stdout, done.stderr[-2000:]
    assert len(read_frames(tmp_path / "out.mkv")) == 5


def test_ranks_without_the_flag_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mkv", pattern(5, 24, 32), codec="ffv1", pix_fmt="yuv444p")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "seedvr2", "restore", str(source), "-o", str(tmp_path / "out.mkv"),
               "--model", str(tiny_model), *SETTINGS]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode != 0
    assert "add --sequence-parallel to split each clip over them" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_a_stopping_rank_ignores_torchruns_sigterm():
    """A rank that already stops (a peer failed) must print its one error and exit even when
    torchrun's SIGTERM for the same failure arrives meanwhile."""
    code = ("import os, signal, torch; from seedvr2.pipeline.distributed import Team; "
            "error = Team(0, 2, torch.device('cpu')).lost('its connection closed'); "
            "os.kill(os.getpid(), signal.SIGTERM); print('still here:', error)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "still here: rank 0 of 2: another process of the run stopped" in done.stdout


def test_without_torchrun_the_flag_says_how_to_launch(tmp_path: Path, capsys) -> None:
    source = write_video(tmp_path / "in.mkv", pattern(5, 24, 32), codec="ffv1", pix_fmt="yuv444p")
    with pytest.raises(SystemExit) as exit_code:
        main(["restore", str(source), "-o", str(tmp_path / "out.mkv"), "--sequence-parallel"])
    assert exit_code.value.code == 2
    assert "torchrun --standalone --nproc-per-node N -m seedvr2" in capsys.readouterr().err


def _worker(launcher: int, rank: int) -> int:
    """The pid of torchrun ``launcher``'s worker of ``rank``."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no rank {rank} under {launcher}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_killed_rank_ends_the_run_and_the_rerun_resumes(tiny_model: Path, tmp_path: Path):
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    long = write_video(clips / "a.mkv", pattern(65, 24, 32), codec="ffv1", pix_fmt="yuv444p")
    write_video(clips / "b.mkv", pattern(5, 24, 32), codec="ffv1", pix_fmt="yuv444p")
    args = ["-v", "restore", "--model", str(tiny_model), *SETTINGS, "-o"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "seedvr2", *args, str(out), str(clips), "--sequence-parallel"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=ENV, start_new_session=True) as launcher:
        try:
            deadline = time.monotonic() + 240
            while not list(out.glob(".*/*.npz")):  # a.mkv's first segment (48 frames) is saved
                assert launcher.poll() is None and time.monotonic() < deadline, "no segment"
                time.sleep(0.2)
            os.kill(_worker(launcher.pid, 1), signal.SIGKILL)
            killed = time.monotonic()
            output, _ = launcher.communicate(timeout=30)
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
    assert time.monotonic() - killed < 20
    assert launcher.returncode != 0 and not list(out.glob("*.mkv"))
    errors = [line for line in output.splitlines() if line.startswith("seedvr2: error:")]
    assert len(errors) == 1, output[-3000:]  # the run stops: b.mkv is not tried in vain
    assert "another process of the run stopped" in errors[0]
    assert "run the same command to resume" in errors[0]
    rerun = _seedvr2([*args, str(out), str(clips)], ranks=2)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(r"resuming at frame (\d+)", rerun.stderr)
    assert resumed is not None and 48 <= int(resumed[1]) < 65  # a segment holds 48 frames or more
    one = tmp_path / "one.mkv"
    assert _seedvr2([*args, str(one), str(long)]).returncode == 0
    _assert_same_output(one, out / "a.mkv")
    assert len(read_frames(out / "b.mkv")) == 5
