"""Folder, glob and list jobs on a Ray cluster: whole files spread over many machines.

One Ray actor per GPU (or per ``cpus_per_worker`` CPUs where the cluster has no GPU) loads the
model once and restores whole files with the plain per-file path (:func:`.jobs.run_jobs`), so each
output has the bytes the plain CLI gives it; files go largest first to whichever worker is free.
Inputs and outputs must lie on a filesystem every node mounts at the same path: each worker checks
that before any work. A worker that dies (killed, out of memory, node lost) is replaced and its
file retried on the next free worker, resuming from the file's finished segments; a file that
fails for its own reasons is reported and skipped. Outputs that exist are left alone ("already
done"), so the same command run again finishes only what is missing. Ray is imported only here,
when a cluster run starts (``pip install 'seedvr2[cluster]'``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from seedvr2 import __version__
from seedvr2.errors import InputError, OutputError, SeedVR2Error

from .jobs import InputSelection, Job, JobResult, OutputSettings, run_jobs
from .loading import ModelLoad
from .report import write_report

log = logging.getLogger(__name__)

SUMMARY = "seedvr2-cluster-summary.json"  # written next to the outputs
ATTEMPTS = 3  # a file whose worker dies this many times is reported and skipped
SHARED = "inputs and outputs must be on a filesystem every node mounts at the same path"


@dataclass(frozen=True)
class ClusterOptions:
    """Where the workers run."""

    address: str | None = None  # a running cluster; None: $RAY_ADDRESS, else a local Ray
    cpus_per_worker: int = 4  # CPUs of each worker on a cluster without GPUs
    poll_seconds: float = 1.0  # how often progress is gathered

    def __post_init__(self) -> None:
        if self.cpus_per_worker < 1:
            raise InputError(f"--cpus-per-worker must be at least 1, got {self.cpus_per_worker}")


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs."""

    node: str
    pid: int
    device: str

    def __str__(self) -> str:
        return f"{self.node} pid {self.pid} ({self.device})"


@dataclass(frozen=True)
class RunningFile:
    """A file a worker is restoring."""

    source: Path
    worker: WorkerInfo
    written: int  # output frames written, reused ones included
    total: int  # 0 until the worker has opened the file


@dataclass(frozen=True)
class ClusterProgress:
    """Where a cluster run stands."""

    files: int  # files to restore in this run
    finished: int  # restored or failed
    frames: int  # frames restored in this run
    seconds: float
    eta: float | None  # seconds left, from the input bytes restored per second
    running: tuple[RunningFile, ...]

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        eta = "?" if self.eta is None else f"{self.eta // 3600:.0f}:{time.strftime('%M:%S', time.gmtime(self.eta))}"
        busy = ", ".join(f"{r.source.name} {r.written}/{r.total or '?'}" for r in self.running)
        return (f"cluster: {self.finished}/{self.files} files, {self.frames} frames, "
                f"{rate:.2f} frames/s, eta {eta}" + (f"; restoring {busy}" if busy else ""))  # fmt: skip


@dataclass
class FileOutcome:
    """How one file of a cluster run went."""

    result: JobResult  # status "done", "already done" or "failed"
    worker: WorkerInfo | None = None
    attempts: int = 0  # workers that took the file (more than one when a worker died)


@dataclass
class ClusterRun:
    """What a cluster run did; :attr:`summary` is the JSON file written next to the outputs."""

    outcomes: list[FileOutcome]
    workers: list[WorkerInfo]
    seconds: float
    summary: Path

    def of(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.result.status == status]

    def line(self) -> str:
        done = self.of("done")
        frames = sum(o.result.frames - o.result.reused for o in done)
        rate = frames / self.seconds if self.seconds else 0.0
        parts = [f"cluster: restored {len(done)} file(s), {frames} frame(s) in {self.seconds:.1f} s "
                 f"({rate:.2f} frames/s) on {len(self.workers)} worker(s)"]  # fmt: skip
        if self.of("already done"):
            parts.append(f"{len(self.of('already done'))} already done")
        if self.of("failed"):
            parts.append(f"{len(self.of('failed'))} failed")
        return "; ".join(parts) + f"; summary: {self.summary}"


def _bytes(path: Path) -> int:
    """Size of a file, or of the files in a folder (an image sequence)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass(frozen=True)
class Probe:
    """What every worker must see as the driver does: the inputs (by size) and a file the driver
    wrote into the output folder."""

    file: Path
    token: str
    inputs: tuple[tuple[Path, int], ...]

    def problem(self) -> str | None:
        """What this process cannot see, or None."""
        for path, size in self.inputs:
            try:
                seen = _bytes(path)
            except OSError:
                return f"cannot see the input {path}"
            if seen != size:
                return f"sees another {path} ({seen} bytes, the driver sees {size})"
        try:
            token = self.file.read_text()
        except OSError:
            return f"cannot see the output folder {self.file.parent}"
        if token != self.token:
            return f"sees another output folder {self.file.parent}"
        if not os.access(self.file.parent, os.W_OK):
            return f"cannot write to the output folder {self.file.parent}"
        return None


@contextmanager
def probing(folder: Path, jobs: list[Job]) -> Iterator[Probe]:
    """A :class:`Probe` whose file lives in ``folder`` for the block, removed after."""
    token = secrets.token_hex(8)
    file = folder / f".seedvr2-cluster-probe-{token}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        file.write_text(token)
    except OSError as error:
        raise OutputError(f"{folder}: cannot write to the output folder ({error.strerror})") from None
    try:
        yield Probe(file, token, tuple((job.source, _bytes(job.source)) for job in jobs))
    finally:
        file.unlink(missing_ok=True)


class Worker:
    """One Ray actor's state: the model, loaded once, and the file it is restoring."""

    def __init__(self, load: ModelLoad, selection: InputSelection, settings: OutputSettings,
                 threads: int | None) -> None:  # fmt: skip
        if threads is not None:
            torch.set_num_threads(threads)
        self.load, self.selection, self.settings = load, selection, settings
        self.restorer = None
        self.written, self.total = 0, 0

    def start(self, probe: Probe) -> WorkerInfo:
        """Check that this node sees the files, then load the model.

        Raises:
            InputError: a path this node cannot see.
            SeedVR2Error: the model cannot be loaded here.
        """
        node = socket.gethostname()
        problem = probe.problem()
        if problem is not None:
            raise InputError(f"a worker on node {node} {problem}; {SHARED} (NFS, a cluster "
                             "filesystem), then run the same command")  # fmt: skip
        self.restorer = self.load.load()
        return WorkerInfo(node, os.getpid(), str(self.restorer.device))

    def restore(self, job: Job) -> JobResult:
        """Restore one file as the plain CLI does; its failures come back as a result."""
        self.written, self.total = 0, 0

        def started(job: Job, frames: int) -> None:
            self.total = frames

        def wrote(count: int) -> None:
            self.written += count

        return run_jobs(self.restorer, [job], self.selection, self.settings, wrote, started)[0]

    def progress(self) -> tuple[int, int]:
        """(frames written, frames) of the current file."""
        return self.written, self.total


def _ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise InputError("--cluster ray needs Ray: pip install 'seedvr2[cluster]'") from None
    return ray


def _connect(ray: ModuleType, address: str | None) -> bool:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), or start a local Ray; whether this
    call started the connection (and so ends it)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning")
    except ConnectionError as error:
        where = address or os.environ.get("RAY_ADDRESS")
        raise InputError(f"no Ray cluster at {where} ({error}); start one with `ray start "
                         "--head` (and `ray start --address HEAD:6379` on the other machines) "
                         "or check --ray-address") from None  # fmt: skip
    return True


def _slots(ray: ModuleType, use_gpus: bool, cpus: int) -> tuple[int, dict[str, float]]:
    """How many workers the cluster's live nodes hold, and each worker's Ray resources."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = sum(int(n.get("GPU", 0)) for n in nodes) if use_gpus else 0
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    count = sum(int(n.get("CPU", 0) // cpus) for n in nodes)
    if count == 0:
        raise InputError(f"no node of the Ray cluster has {cpus} CPUs for a worker; lower "
                         "--cpus-per-worker")  # fmt: skip
    return count, {"num_cpus": cpus}


def _check_runtime(load: ModelLoad) -> None:
    runtime = load.runtime
    if runtime.devices or runtime.sequence_parallel or runtime.device not in ("auto", "cuda", "cpu"):
        raise InputError("--cluster ray gives each worker one GPU (or --cpus-per-worker CPUs); "
                         "use --device auto, cuda or cpu, without --devices or "
                         "--sequence-parallel")  # fmt: skip


def summary_folder(jobs: list[Job], output: str | Path | None) -> Path:
    """Where the summary goes: the output folder given, else the folder holding every output."""
    if output is not None and all(job.output != Path(output).expanduser() for job in jobs):
        return Path(output).expanduser().absolute()
    return Path(os.path.commonpath([job.output.parent.absolute() for job in jobs]))


class _Team:
    """The workers of a run and their pending calls: a start (check the paths, load the model)
    or a file; :meth:`spawn` adds a worker, one is idle once its call has returned."""

    def __init__(self, ray: ModuleType, make: Callable[[], Any], probe: Probe) -> None:
        self.ray, self.make, self.probe = ray, make, probe
        self.idle: list[tuple[Any, WorkerInfo]] = []
        self.calls: dict[Any, tuple[Any, WorkerInfo | None, Job | None]] = {}
        self.infos: list[WorkerInfo] = []

    def spawn(self) -> None:
        handle = self.make()
        self.calls[handle.start.remote(self.probe)] = (handle, None, None)

    def ready(self, handle: Any, info: WorkerInfo) -> None:
        self.idle.append((handle, info))
        if info not in self.infos:
            self.infos.append(info)

    def joined(self, handle: Any, call: Any) -> None:
        """A replacement's start returned: the worker is idle, or dropped with a warning."""
        try:
            self.ready(handle, _get(self.ray, call))
        except SeedVR2Error as error:
            log.warning("a Ray worker could not start: %s", error)
        except self.ray.exceptions.RayActorError as error:
            log.warning("a Ray worker could not start: %s", _reason(error))

    def start(self, count: int) -> None:
        """Start ``count`` workers and wait for them all, before any file is given out.

        Raises:
            SeedVR2Error: a worker cannot see the files or load the model.
        """
        for _ in range(count):
            self.spawn()
        for call in list(self.calls):
            try:
                info = _get(self.ray, call)
            except self.ray.exceptions.RayActorError as error:
                raise InputError(f"a Ray worker could not start: {_reason(error)}") from None
            handle, _, _ = self.calls.pop(call)
            self.ready(handle, info)

    def give(self, job: Job) -> None:
        handle, info = self.idle.pop()
        self.calls[handle.restore.remote(job)] = (handle, info, job)

    def busy(self) -> list[tuple[Any, WorkerInfo, Job]]:
        return [(h, i, j) for h, i, j in self.calls.values() if j is not None]

    def kill(self) -> None:
        for handle in [h for h, _ in self.idle] + [h for h, _, _ in self.calls.values()]:
            self.ray.kill(handle)


def _get(ray: ModuleType, call: Any) -> Any:
    """``ray.get`` with the project's errors raised as themselves, not wrapped by Ray."""
    try:
        return ray.get(call)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, SeedVR2Error):
            raise error.cause from None
        raise


def _reason(error: Exception) -> str:
    """Why a worker died, from Ray's error: its first line and the exit detail."""
    lines = [line.strip() for line in str(error).strip().splitlines()]
    detail = next((line for line in lines if "exit detail" in line.lower()), "")
    return " ".join(part for part in (lines[0] if lines else type(error).__name__, detail) if part)


def restore_on_cluster(
    jobs: list[Job],
    load: ModelLoad,
    selection: InputSelection | None = None,
    settings: OutputSettings | None = None,
    cluster: ClusterOptions | None = None,
    folder: Path | None = None,
    extra: dict[str, Any] | None = None,
    on_progress: Callable[[ClusterProgress], None] | None = None,
) -> ClusterRun:
    """Restore ``jobs`` on a Ray cluster and write the summary (:data:`SUMMARY`) into ``folder``.

    ``folder`` defaults to :func:`summary_folder`; ``extra`` (the command, say) goes into the
    summary; ``on_progress`` gets a :class:`ClusterProgress` every ``cluster.poll_seconds``.
    Outputs that exist are "already done" unless ``settings.overwrite``.

    Raises:
        InputError: Ray missing, no cluster at the address, a node that cannot see the files.
        SeedVR2Error: a worker cannot load the model.
        KeyboardInterrupt: the driver was stopped; the workers stop, their segments stay.
    """
    selection, settings = selection or InputSelection(), settings or OutputSettings()
    cluster = cluster or ClusterOptions()
    _check_runtime(load)
    began = time.perf_counter()
    jobs = [Job(job.source.absolute(), job.output.absolute()) for job in jobs]
    folder = folder or summary_folder(jobs, None)
    outcomes = {job: FileOutcome(JobResult(job, "already done", message="output exists"))
                for job in jobs if job.output.exists() and not settings.overwrite}  # fmt: skip
    todo = sorted((job for job in jobs if job not in outcomes), key=lambda j: -_bytes(j.source))
    infos: list[WorkerInfo] = []
    if todo:
        ray = _ray()
        ended = _connect(ray, cluster.address)
        try:
            count, resources = _slots(ray, load.runtime.device != "cpu", cluster.cpus_per_worker)
            threads = None if "num_gpus" in resources else cluster.cpus_per_worker
            keep = dataclasses.replace(settings, skip_existing=not settings.overwrite)
            actor = ray.remote(max_concurrency=2, max_restarts=0, **resources)(Worker)
            with probing(folder, todo) as probe:
                team = _Team(ray, lambda: actor.remote(load, selection, keep, threads), probe)
                try:
                    team.start(min(count, len(todo)))
                    outcomes |= _dispatch(team, todo, cluster.poll_seconds, on_progress)
                finally:
                    infos = team.infos
                    team.kill()
        finally:
            if ended:
                ray.shutdown()
    run = ClusterRun([outcomes[job] for job in jobs], infos, time.perf_counter() - began,
                     folder / SUMMARY)  # fmt: skip
    write_report(run.summary, _summary(run, extra or {}))
    return run


def _dispatch(
    team: _Team, todo: list[Job], poll: float, on_progress: Callable[[ClusterProgress], None] | None
) -> dict[Job, FileOutcome]:
    """Give each job, in order, to the next idle worker; a job whose worker died goes to the
    front again (a fresh worker replaces the dead one) until :data:`ATTEMPTS` workers died on it."""
    ray = team.ray
    waiting, outcomes = deque(todo), {}
    attempts = dict.fromkeys(todo, 0)
    clock = _Clock(todo, poll)
    while waiting or team.busy():
        while team.idle and waiting:
            attempts[waiting[0]] += 1
            team.give(waiting.popleft())
        if not team.calls:  # every worker died and none could replace them
            for job in waiting:
                outcomes[job] = FileOutcome(JobResult(job, "failed", message=f"{job.source}: no "
                                            "Ray worker was left to restore it; run the same "
                                            "command again"), None, attempts[job])  # fmt: skip
            break
        ready, _ = ray.wait(list(team.calls), num_returns=1, timeout=poll)
        for call in ready:
            handle, info, job = team.calls.pop(call)
            if job is None:
                team.joined(handle, call)
                continue
            try:
                result = ray.get(call)
                team.idle.append((handle, info))
            except ray.exceptions.RayActorError as error:
                team.spawn()  # in the dead worker's place
                if attempts[job] < ATTEMPTS:
                    log.warning("%s: its worker %s died (%s); trying again", job.source, info,
                                _reason(error))  # fmt: skip
                    waiting.appendleft(job)
                    continue
                message = (f"{job.source}: its worker died {ATTEMPTS} times (killed, out of "
                           f"memory or node lost; last: {_reason(error)})")  # fmt: skip
                result = JobResult(job, "failed", message=message)
            if result.status == "skipped":  # written meanwhile by another run
                result = dataclasses.replace(result, status="already done")
            outcomes[job] = FileOutcome(result, info, attempts[job])
        if on_progress is not None and (ready or clock.due()):
            on_progress(clock.progress(team, outcomes))
    return outcomes


class _Clock:
    """Progress of a run: finished files and running ones, frames restored, the ETA from the
    input bytes restored per second."""

    def __init__(self, todo: list[Job], poll: float) -> None:
        self.sizes = {job.source: _bytes(job.source) for job in todo}
        self.poll, self.began, self.last = poll, time.perf_counter(), 0.0

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.poll

    def progress(self, team: _Team, outcomes: dict[Job, FileOutcome]) -> ClusterProgress:
        ray, busy = team.ray, team.busy()
        calls = [handle.progress.remote() for handle, _, _ in busy]
        answered, _ = ray.wait(calls, num_returns=len(calls), timeout=self.poll)
        running = []
        for call, (_, info, job) in zip(calls, busy):
            try:
                written, total = ray.get(call) if call in answered else (0, 0)
            except ray.exceptions.RayError:  # died meanwhile: reported by the dispatch
                written, total = 0, 0
            running.append(RunningFile(job.source, info, written, total))
        finished = [o.result for job, o in outcomes.items() if job.source in self.sizes]
        done = sum(self.sizes[r.job.source] for r in finished)
        done += sum(self.sizes[f.source] * f.written / f.total for f in running if f.total)
        frames = sum(r.frames - r.reused for r in finished) + sum(f.written for f in running)
        self.last = now = time.perf_counter()
        seconds = now - self.began
        eta = (sum(self.sizes.values()) - done) * seconds / done if done else None
        return ClusterProgress(len(self.sizes), len(finished), frames, seconds, eta, tuple(running))


def _summary(run: ClusterRun, extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary: totals, workers, every file and every failure with its reason."""
    files = [
        {
            "input": str(o.result.job.source),
            "output": str(o.result.job.output),
            "status": o.result.status,
            "frames": o.result.frames,
            "reused": o.result.reused,
            "seconds": round(o.result.seconds, 3),
            "worker": None if o.worker is None else str(o.worker),
            "attempts": o.attempts,
            "message": o.result.message,
        }
        for o in run.outcomes
    ]
    return {
        "seedvr2": __version__,
        **extra,
        "seconds": round(run.seconds, 3),
        "workers": [str(w) for w in run.workers],
        "totals": {
            "files": len(run.outcomes),
            "restored": len(run.of("done")),
            "already_done": len(run.of("already done")),
            "failed": len(run.of("failed")),
            "frames": sum(o.result.frames - o.result.reused for o in run.of("done")),
        },
        "files": files,
        "failures": [{"input": f["input"], "reason": f["message"]} for f in files
                     if f["status"] == "failed"],  # fmt: skip
    }
