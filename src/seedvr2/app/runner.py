"""What the page and the API do, without the web framework: plan and restore uploaded files.

The restoring itself is the CLI's: :func:`seedvr2.pipeline.restore_file` over the pool's loaded
:class:`~seedvr2.pipeline.Restorer`, with its ``on_start`` and ``on_frame`` callbacks driving the
progress and the Cancel button. Cancel takes effect when the next frame is written, so within one
temporal batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedvr2.errors import InputError
from seedvr2.media import IMAGE_EXTENSIONS
from seedvr2.media.encode import check_video_settings
from seedvr2.pipeline import (
    InputSelection,
    Job,
    JobResult,
    OutputSettings,
    memory,
    planning,
    restore_file,
    runtime,
)
from seedvr2.pipeline.jobs import CONTAINER_FOR_CODEC
from seedvr2.pipeline.options import RestoreOptions

from .compare import comparison
from .models import ModelPool
from .uploads import Limits, Upload, accept
from .work import Cancelled

CODECS = ("h264", "h265", "vp9", "ffv1", "prores")


@dataclass(frozen=True)
class Request:
    """One restoration as asked, with the CLI's names; checked on creation.

    Raises:
        InputError: a size, colour correction, codec or quality that cannot be used.
    """

    model: str  # a label of the pool's choices
    scale: float | None = None
    resolution: int | None = None
    color: str | None = None  # None: the model's own (DiTConfig.color_correction)
    codec: str = "h264"
    crf: int | None = None
    strength: float = 1.0  # share of the model's change kept (RestoreOptions.strength)

    def __post_init__(self) -> None:
        if (self.scale is None) == (self.resolution is None):
            raise InputError("give the size as either a scale or a resolution (short side)")
        if self.scale is not None and not 0 < self.scale <= 16:
            raise InputError(f"scale {self.scale} must be above 0 and at most 16")
        if self.resolution is not None and not 16 <= self.resolution <= 8192:
            raise InputError(f"resolution {self.resolution} must be 16 to 8192 pixels")
        if self.codec not in CODECS:
            raise InputError(f"codec {self.codec!r} is not one of {', '.join(CODECS)}")
        check_video_settings(self.codec, None, self.crf, None)
        self.options()  # the colour correction and strength

    def option_changes(self) -> dict[str, Any]:
        """The :class:`RestoreOptions` fields this request sets."""
        return {"resolution": self.resolution, "scale": self.scale, "color": self.color,
                "strength": self.strength}  # fmt: skip

    def options(self) -> RestoreOptions:
        return RestoreOptions(**self.option_changes())

    def settings(self) -> OutputSettings:
        return OutputSettings(codec=self.codec, crf=self.crf)

    def output_name(self, upload: Upload) -> str:
        """The download's name: the input's, with ``_seedvr2`` and the output type."""
        image = upload.info.kind == "image" and upload.path.suffix in IMAGE_EXTENSIONS
        return upload.stem + "_seedvr2" + (upload.path.suffix if image else
                                           CONTAINER_FOR_CODEC[self.codec])  # fmt: skip


@dataclass
class Progress:
    """Where a run stands, for the page's progress bar."""

    files: int
    phase: str = "starting"
    file: int = 1
    done: int = 0  # frames written
    total: int = 0
    began: float = field(default_factory=time.perf_counter)

    def begin(self, phase: str, file: int, total: int = 0) -> None:
        """A new phase of file number ``file`` (with ``total`` frames to count)."""
        self.phase, self.file, self.done, self.total = phase, file, 0, total
        self.began = time.perf_counter()

    @property
    def rate(self) -> float:
        seconds = time.perf_counter() - self.began
        return self.done / seconds if self.done and seconds > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    def text(self) -> str:
        which = f" (file {self.file} of {self.files})" if self.files > 1 else ""
        if not self.total:
            return f"{self.phase}{which}"
        eta = f", about {(self.total - self.done) / self.rate:.0f} s left" if self.rate else ""
        return (f"{self.phase}{which}: frame {self.done} of {self.total}, "
                f"{self.rate:.2f} frames/s{eta}")  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """One restored file."""

    upload: Upload
    output: Path
    result: JobResult
    pairs: list  # (frame index, before, after) of :func:`.compare.comparison`


def stage(files: list[tuple[Path, str]], folder: Path, limits: Limits) -> list[Upload]:
    """Accept every ``(upload, name)`` into its own sub-folder of ``folder``, all before any work."""
    if not files:
        raise InputError("no file given: drop a video or an image on the page first")
    return [accept(path, name, folder / str(i), limits) for i, (path, name) in enumerate(files)]


def plan(pool: ModelPool, request: Request, uploads: list[Upload]) -> str:
    """The dry-run planner's view of each file: sizes, frames, batches, memory and time."""
    options = request.options()
    setup, device = pool.memory_setup()
    available = runtime.available_memory_bytes(device)
    facts = pool.facts(request.model)
    lines = []
    for upload in uploads:
        job = Job(upload.path, upload.path.with_name(request.output_name(upload)))
        work = planning.plan_job(options, job, InputSelection())
        (in_h, in_w), (out_h, out_w) = work.size.source, work.size.output
        peak = memory.estimate_peak_bytes(work, options, facts, setup)
        free = "" if available is None else f" of {memory.amount(available)} free"
        seconds = pool.seconds(request.model, out_w * out_h * work.frames)
        if seconds is None:  # nothing measured yet on this server
            when = f"about {planning.duration(pool.planned_seconds(request.model, options, work))} (planned)"
        else:
            when = f"about {planning.duration(seconds)}"
        lines.append(
            f"{upload.name}: {in_w}x{in_h} -> {out_w}x{out_h}, {work.frames} frame(s) in "
            f"{len(work.batches)} batch(es); memory about {memory.amount(peak)}{free}; {when}"
        )
        if available is not None and peak > available:
            lines.append(f"  will not fit: try {memory.advice(work, options, facts, setup, available)}")
    return "\n".join(lines)


def restore(
    pool: ModelPool,
    request: Request,
    uploads: list[Upload],
    stop: threading.Event,
    report: Callable[[Progress], None],
) -> list[Outcome]:
    """Restore each staged upload beside it; ``stop`` set makes the job raise :class:`Cancelled`
    at its next frame (the unfinished output is removed by ``restore_file``)."""
    state = Progress(len(uploads), "loading the model")
    report(state)
    restorer = pool.restorer(request.model).with_options(**request.option_changes())
    outcomes = []
    for number, upload in enumerate(uploads, start=1):
        if stop.is_set():
            raise Cancelled("cancelled; nothing was kept")
        job = Job(upload.path, upload.path.with_name(request.output_name(upload)))

        def started(_: Job, total: int, number: int = number) -> None:
            state.begin("restoring", number, total)
            report(state)

        def frame(count: int) -> None:
            state.done += count
            report(state)
            if stop.is_set():
                raise Cancelled(f"cancelled at frame {state.done} of {state.total}; nothing was kept")

        state.begin("reading", number)
        report(state)
        result = restore_file(restorer, job, settings=request.settings(), on_frame=frame,
                              on_start=started)  # fmt: skip
        pool.record(request.model, result)
        state.begin("preparing the comparison", number)
        report(state)
        outcomes.append(Outcome(upload, job.output, result,
                                comparison(upload.path, job.output, result.frames)))  # fmt: skip
    return outcomes
