"""Progress inside a batch and cooperative cancelling; callers render the events (no display here).

A batch runs in phases: ``encode`` (VAE tiles x temporal chunks), ``dit`` (DiT blocks x passes)
and ``decode`` (VAE tiles x chunks). Forward hooks on the networks report each finished unit, and
check for a cancel request before every block, tile, chunk and VAE layer, so a cancel takes
effect within one such step (seconds) rather than at the end of the batch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from torch import nn

PHASES = ("encode", "dit", "decode")


@dataclass(frozen=True)
class Progress:
    """Where one batch stands; ``fraction`` weighs the phases by their estimated FLOPs."""

    phase: str  # "encode", "dit" or "decode"
    done: int  # units of the phase finished (tiles x chunks, or DiT blocks x passes)
    total: int
    fraction: float  # share of the batch's work done, in [0, 1]
    batch: int  # first frame of the batch (prepended frames counted)
    frames: int  # output frames the batch completes


class Cancelled(KeyboardInterrupt):
    """A restoration stopped on request (:meth:`Restorer.cancel`) or by Ctrl-C during a file job.

    Like Ctrl-C it is not an error: per-file error handling lets it through and the whole run
    stops. A video render keeps its finished segments (``kept`` frames), so running the same job
    again resumes.
    """

    def __init__(self, message: str = "restoration cancelled", kept: int = 0) -> None:
        super().__init__(message)
        self.kept = kept


class Control:
    """The progress listener and the cancel request, shared by a restorer and its replicas."""

    def __init__(self) -> None:
        self.listener: Callable[[Progress], None] | None = None
        self.cancel_request = threading.Event()

    def check(self) -> None:
        """Raise :class:`Cancelled` once a cancel was requested."""
        if self.cancel_request.is_set():
            raise Cancelled("restoration cancelled")


class BatchProgress:
    """Reports the phases of one batch to a :class:`Control`'s listener."""

    def __init__(self, control: Control, batch: int, frames: int, flops: dict[str, float]) -> None:
        self.control, self.batch, self.frames = control, batch, frames
        whole = sum(flops.values()) or 1.0
        self._share = {phase: flops[phase] / whole for phase in PHASES}
        self._before = {phase: sum(self._share[p] for p in PHASES[: i]) for i, phase in enumerate(PHASES)}

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.control.listener is not None:
            fraction = self._before[phase] + self._share[phase] * done / total
            self.control.listener(Progress(phase, done, total, fraction, self.batch, self.frames))

    @contextlib.contextmanager
    def phase(self, name: str, units: Iterable[nn.Module], total: int, checked: Iterable[nn.Module]) -> Iterator[None]:
        """Run phase ``name``: each call of a module in ``units`` is one of ``total`` units; every
        module in ``checked`` checks for a cancel request before it runs."""
        done = 0

        def finished(*_: object) -> None:
            nonlocal done
            done += 1
            self._report(name, min(done, total), total)

        def check(*_: object) -> None:
            self.control.check()

        handles = [module.register_forward_pre_hook(check) for module in checked]
        handles += [module.register_forward_hook(finished) for module in units]
        self.control.check()
        self._report(name, 0, total)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
