"""`restore --cluster ray` on a local Ray with two CPU workers: the plain CLI's bytes, a corrupt
file reported and skipped, a killed worker's file resumed elsewhere, re-runs finish what is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from media_fixtures import pattern, write_video
from process_support import default_sigint
from seedvr2.cli import main
from seedvr2.errors import InputError
from seedvr2.pipeline import InputSelection, OutputSettings, RestoreOptions, RuntimeOptions
from seedvr2.pipeline.cluster import (
    SUMMARY,
    ClusterOptions,
    ClusterRun,
    Probe,
    Worker,
    probing,
    restore_on_cluster,
)
from seedvr2.pipeline.jobs import plan_jobs
from seedvr2.pipeline.loading import ModelLoad

ARGS = ["--device", "cpu", "--codec", "ffv1", "-b", "5", "--overlap", "2", "-q"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with two CPUs for the module: two workers of one CPU each."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def _clip(path: Path, frames: int, seed: int = 0, size: tuple[int, int] = (24, 32)) -> Path:
    return write_video(path, pattern(frames, *size, seed=seed), codec="ffv1", pix_fmt="yuv444p")


def _plain(model: Path, clip: Path, out: Path) -> bytes:
    """The plain CLI's output for one file, on one thread as each worker (float sums depend on
    how work is split between threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["restore", str(clip), "-o", str(out), "-m", str(model), *ARGS]) == 0
    finally:
        torch.set_num_threads(threads)
    return out.read_bytes()


def _restore_via_api(model: Path, inputs: Path, out: Path, on_progress) -> ClusterRun:
    """The Python API's cluster run with the settings of ARGS, progress every 0.1 s."""
    jobs = plan_jobs([str(inputs)], str(out), OutputSettings(codec="ffv1"))
    load = ModelLoad(str(model), RestoreOptions(batch_size=5, overlap=2), RuntimeOptions(device="cpu"))
    return restore_on_cluster(jobs, load, InputSelection(), OutputSettings(codec="ffv1"),
                              ClusterOptions(cpus_per_worker=1, poll_seconds=0.1), out,
                              on_progress=on_progress)  # fmt: skip


def _summary(folder: Path) -> dict:
    return json.loads((folder / SUMMARY).read_text())


def _status(summary: dict) -> dict[str, str]:
    return {Path(f["input"]).name: f["status"] for f in summary["files"]}


def test_a_folder_gives_the_plain_outputs_and_reports_the_corrupt_file(local_ray, tiny_model,
                                                                       tmp_path, capsys):  # fmt: skip
    inputs, out, plain = tmp_path / "in", tmp_path / "out", tmp_path / "plain"
    inputs.mkdir()
    clips = [_clip(inputs / f"clip{n}.mkv", frames, n) for n, frames in enumerate([9, 17, 5, 13])]
    (inputs / "corrupt.mkv").write_bytes(b"not a video" * 100)
    command = ["restore", str(inputs), "-o", str(out), "-m", str(tiny_model), "--cluster", "ray",
               "--cpus-per-worker", "1", *ARGS]  # fmt: skip
    assert main(command) == 1
    assert "corrupt.mkv: cannot be read" in capsys.readouterr().err
    summary = _summary(out)
    assert summary["totals"] | {"frames": 0} == {"files": 5, "restored": 4, "already_done": 0,
                                                  "failed": 1, "frames": 0}  # fmt: skip
    assert summary["totals"]["frames"] == 9 + 17 + 5 + 13
    assert [Path(f["input"]).name for f in summary["failures"]] == ["corrupt.mkv"]
    assert "cannot be read" in summary["failures"][0]["reason"]
    assert len(summary["workers"]) == 2
    for clip in clips:
        assert (out / clip.name).read_bytes() == _plain(tiny_model, clip, plain / clip.name)
    assert sorted(p.name for p in out.iterdir()) == sorted([c.name for c in clips] + [SUMMARY])

    # Stopped and run again: only what is missing is restored, the rest is already done.
    (out / "clip2.mkv").unlink()
    kept = {c.name: (out / c.name).stat().st_mtime_ns for c in clips if c.name != "clip2.mkv"}
    assert main(command) == 1
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert (out / "clip2.mkv").read_bytes() == (plain / "clip2.mkv").read_bytes()
    assert _status(_summary(out)) == {"clip0.mkv": "already done", "clip1.mkv": "already done",
                                      "clip2.mkv": "done", "clip3.mkv": "already done",
                                      "corrupt.mkv": "failed"}  # fmt: skip


def test_a_worker_killed_mid_file_has_its_file_resumed_on_another(local_ray, tiny_model, tmp_path):
    inputs, out, plain = tmp_path / "in", tmp_path / "out", tmp_path / "plain"
    inputs.mkdir()
    long = _clip(inputs / "long.mkv", 240, 0, (32, 48))  # the largest: given out first
    clips = [long, _clip(inputs / "a.mkv", 9, 1), _clip(inputs / "b.mkv", 13, 2)]
    killed: list[int] = []

    def kill_once_a_segment_is_saved(progress) -> None:
        for running in progress.running:
            saved = list(out.glob(".long.mkv.seedvr2-*/*.npz"))
            if running.source == long and saved and not killed:
                os.kill(running.worker.pid, signal.SIGKILL)
                killed.append(running.worker.pid)

    run = _restore_via_api(tiny_model, inputs, out, kill_once_a_segment_is_saved)
    assert killed, "the long file finished before a worker could be killed"
    outcomes = {o.result.job.source.name: o for o in run.outcomes}
    assert {name: o.result.status for name, o in outcomes.items()} == dict.fromkeys(
        ["long.mkv", "a.mkv", "b.mkv"], "done")
    assert outcomes["long.mkv"].attempts == 2 and outcomes["long.mkv"].worker.pid != killed[0]
    assert 0 < outcomes["long.mkv"].result.reused < 240  # resumed from the killed one's segments
    assert [o.attempts for name, o in outcomes.items() if name != "long.mkv"] == [1, 1]
    for clip in clips:
        assert (out / clip.name).read_bytes() == _plain(tiny_model, clip, plain / clip.name)
    assert sorted(p.name for p in out.iterdir()) == sorted([c.name for c in clips] + [SUMMARY])


def test_a_stopped_driver_is_finished_by_the_same_command(local_ray, tiny_model, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    long = _clip(inputs / "long.mkv", 400, 0, (32, 48))
    _clip(inputs / "a.mkv", 9, 1)
    command = ["restore", str(inputs), "-o", str(out), "-m", str(tiny_model), "--cluster", "ray",
               "--cpus-per-worker", "1", *ARGS]  # fmt: skip
    driver = subprocess.Popen([sys.executable, "-m", "seedvr2", *command], stderr=subprocess.PIPE,
                              text=True, preexec_fn=default_sigint)  # fmt: skip
    deadline = time.monotonic() + 300  # Ray starts slowly on a busy machine
    while not list(out.glob(".long.mkv.seedvr2-*/*.npz")) and time.monotonic() < deadline:
        assert driver.poll() is None, "the driver ended before a segment was saved"
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)  # Ctrl-C
    assert driver.wait(60) == 130
    assert "run the same command to finish what is missing" in driver.stderr.read()
    assert not (out / "long.mkv").exists()
    assert main(command) == 0
    files = {Path(f["input"]).name: f for f in _summary(out)["files"]}
    assert files["a.mkv"]["status"] == "already done" and files["long.mkv"]["reused"] > 0
    assert (out / "long.mkv").read_bytes() == _plain(tiny_model, long, tmp_path / "plain.mkv")


def test_a_file_whose_worker_always_dies_is_reported_after_three_and_the_rest_go_on(
    local_ray, tiny_model, tmp_path
):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    deadly = _clip(inputs / "deadly.mkv", 240, 0, (32, 48))
    _clip(inputs / "a.mkv", 9, 1)
    killed: list[int] = []

    def kill_whoever_restores_it(progress) -> None:
        for running in progress.running:
            if running.source == deadly and running.worker.pid not in killed:
                os.kill(running.worker.pid, signal.SIGKILL)
                killed.append(running.worker.pid)

    run = _restore_via_api(tiny_model, inputs, out, kill_whoever_restores_it)
    assert len(killed) == 3 and [o.attempts for o in run.of("failed")] == [3]
    assert _status(_summary(out)) == {"deadly.mkv": "failed", "a.mkv": "done"}
    assert "its worker died 3 times" in _summary(out)["failures"][0]["reason"]
    assert not (out / "deadly.mkv").exists() and (out / "a.mkv").is_file()


def test_a_worker_that_cannot_see_the_files_names_its_node_and_the_path(tmp_path):
    clip = _clip(tmp_path / "in.mkv", 5)
    jobs = plan_jobs([str(clip)], str(tmp_path / "out"), OutputSettings())
    worker = Worker(ModelLoad(), InputSelection(), OutputSettings(), threads=None)
    with probing(tmp_path / "out", jobs) as probe:
        assert probe.problem() is None
        (tmp_path / "out" / probe.file.name).write_text("another folder's probe")
        with pytest.raises(InputError, match=r"a worker on node .* sees another output folder"):
            worker.start(probe)
    assert list((tmp_path / "out").iterdir()) == []  # the probe is gone
    moved = Probe(probe.file, probe.token, ((tmp_path / "gone.mkv", 10),))
    with pytest.raises(InputError, match=r"cannot see the input .*gone.mkv; inputs and outputs "
                       "must be on a filesystem every node mounts"):  # fmt: skip
        worker.start(moved)


def test_without_ray_seedvr2_imports_and_the_cluster_asks_for_the_extra(tmp_path, monkeypatch,
                                                                         capsys):  # fmt: skip
    code = "import sys; sys.modules['ray'] = None; import seedvr2.cli, seedvr2.pipeline.cluster"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    clip = _clip(tmp_path / "in.mkv", 5)
    assert main(["restore", str(clip), "-o", str(tmp_path / "out"), "--cluster", "ray", *ARGS]) == 1
    assert "pip install 'seedvr2[cluster]'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["restore", str(clip), "--ray-address", "host:6379"])
    assert stop.value.code == 2
    assert "add --cluster ray" in capsys.readouterr().err
