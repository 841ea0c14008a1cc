"""What ``seedvr2 restore`` shows while it runs: a bar per file that moves inside batches, warnings
and notes printed above it, and Ctrl-C turned into a prompt, resumable stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from seedvr2.pipeline import Job, Progress, Restorer

if TYPE_CHECKING:
    from seedvr2.pipeline.cluster import ClusterProgress


def note(text: str) -> None:
    """Print a line to stderr above any progress bar."""
    tqdm.write(text, file=sys.stderr)


@contextlib.contextmanager
def messages_above_bar() -> Iterator[None]:
    """Send log records and ``warnings.warn`` through :func:`note`, so that no bar is overwritten."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        note(warnings.formatwarning(message, category, filename, lineno, line).rstrip())

    warnings.showwarning = show
    try:
        with logging_redirect_tqdm([logging.getLogger()]):
            yield
    finally:
        warnings.showwarning = shown


@contextlib.contextmanager
def interrupts_cancel(restorer: Restorer) -> Iterator[None]:
    """Make Ctrl-C also cancel the work of the restorer's other devices (their threads stop at
    their next DiT block, VAE tile, chunk or layer); the main thread gets KeyboardInterrupt as
    usual. An inherited "ignore Ctrl-C" (a background job) is respected."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        restorer.cancel()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Bar(tqdm):
    """A tqdm bar whose right part is a status line of ours (``{status}`` in ``bar_format``)."""

    status = ""

    @property
    def format_dict(self) -> dict:
        return {**super().format_dict, "status": self.status}


class RestoreBar:
    """One bar per file: frames written plus the done share of the batches under way, the phase
    and an ETA (from the planner until work has been measured, then from the measured rate)."""

    def __init__(self, quiet: bool, plan: Callable[[Job, int], float | None]) -> None:
        self.quiet, self.plan = quiet, plan
        self.bar: tqdm | None = None
        self.lock = threading.Lock()
        self.started: list[Job] = []

    @contextlib.contextmanager
    def loading(self, model: str) -> Iterator[None]:
        """Show the model load as a phase of its own, once loaded (a failure stays one line)."""
        began = time.perf_counter()
        yield
        if not self.quiet:
            note(f"loaded model {model} in {time.perf_counter() - began:.1f} s")

    def start(self, job: Job, frames: int) -> None:
        self.close()
        self.started.append(job)
        self.total, self.written, self.reused = frames, 0, 0
        self.inflight: dict[int, float] = {}  # batch start -> output frames' worth of work done
        self.restored: list[int] = []  # batches done, in order, their frames being written
        self.phase, self.work_began = "reading", None
        self.began = time.perf_counter()
        self.planned = None if self.quiet else self.plan(job, frames)
        self.bar = _Bar(total=frames, desc=job.source.name, unit="frame", disable=self.quiet,
                        dynamic_ncols=True, file=sys.stderr, bar_format="{l_bar}{bar}| {status}")  # fmt: skip
        self._show()

    def resumed(self, job: Job, frame: int, frames: int) -> None:
        note(f"{job.source.name}: resuming at frame {frame} of {frames}")
        self.reused = frame

    def frame(self, count: int) -> None:
        with self.lock:
            self.written += count
            left = count  # frames now counted as written: no longer in flight
            while left > 0 and self.restored:
                batch = self.restored[0]
                taken = min(left, self.inflight.get(batch, 0.0))
                self.inflight[batch] = self.inflight.get(batch, 0.0) - taken
                left -= taken
                if self.inflight[batch] <= 1e-6:
                    del self.inflight[batch]
                    self.restored.pop(0)
        self._show()

    def progress(self, event: Progress) -> None:
        with self.lock:
            if self.work_began is None:
                self.work_began = time.perf_counter()
            self.inflight[event.batch] = event.fraction * event.frames
            if event.fraction >= 1:
                self.restored.append(event.batch)
            self.phase = f"{event.phase} {event.done}/{event.total}"
        self._show()

    def _eta(self, position: float) -> str:
        now = time.perf_counter()
        measured = position - self.reused
        if self.work_began is not None and measured > 0:
            left = (self.total - position) * (now - self.work_began) / measured
            return f"eta {tqdm.format_interval(left)}"
        if self.planned is not None:
            return f"eta ~{tqdm.format_interval(max(0.0, self.planned - (now - self.began)))} (planned)"
        return "eta ?"

    def _show(self) -> None:
        if self.bar is None or self.quiet:
            return
        with self.lock:
            position = min(self.total, self.written + sum(self.inflight.values()))
            elapsed = tqdm.format_interval(time.perf_counter() - self.began)
            text = f"{position:.1f}/{self.total} frames, {self.phase}, {elapsed}, {self._eta(position)}"
            self.bar.n, self.bar.status = position, text
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ClusterLines:
    """Progress of a cluster run, a line on stderr whenever a file finishes and at least every
    ``every`` seconds."""

    def __init__(self, every: float = 10.0) -> None:
        self.every, self.last, self.finished = every, 0.0, -1

    def __call__(self, progress: ClusterProgress) -> None:
        now = time.perf_counter()
        if progress.finished != self.finished or now - self.last >= self.every:
            note(progress.line())
            self.finished, self.last = progress.finished, now
