"""Dry runs and pre-flight checks: what each job will do (sizes, batches) and whether it fits.

The memory estimate and the advice come from :mod:`.memory`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seedvr2.errors import SeedVR2Error
from seedvr2.media import MediaInfo

from .batching import TemporalBatch
from .jobs import InputSelection, Job, JobResult, frame_count, open_input
from .memory import MemorySetup, ModelFacts, Workload, amount, check_fits, job_batches
from .options import RestoreOptions
from .sizing import plan_size


@dataclass(frozen=True)
class JobPlan(Workload):
    """A job as it would run."""

    job: Job
    info: MediaInfo
    batches: list[TemporalBatch]


def plan_job(options: RestoreOptions, job: Job, selection: InputSelection) -> JobPlan:
    """Open the input (no decoding beyond counting) and plan sizes and batches."""
    source = open_input(job, selection)
    frames = frame_count(source)
    size = plan_size((source.info.height, source.info.width), options.resolution, options.scale,
                     options.max_side)  # fmt: skip
    return JobPlan(size, frames, job, source.info, job_batches(frames, options))


def refuse_all(
    jobs: list[Job],
    options: RestoreOptions,
    selection: InputSelection,
    model: ModelFacts | None,
    setup: MemorySetup,
    devices: list[torch.device],
) -> list[JobResult] | None:
    """Every job's failure when none of them can run, so no model need load; None once one may.

    A job fails here when its input cannot be planned or (with ``model`` facts) it cannot fit.
    """
    failed = []
    for job in jobs:
        try:
            plan = plan_job(options, job, selection)
            if model is not None:
                check_fits(str(job.source), plan, options, model, setup, devices)
        except SeedVR2Error as error:
            failed.append(JobResult(job, "failed", message=str(error)))
            continue
        return None
    return failed


def describe(
    plan: JobPlan,
    peak: int | None = None,
    available: int | None = None,
    advice: str | None = None,
    seconds: float | None = None,
) -> str:
    """Lines a dry run prints for one job; ``advice`` is printed when ``peak > available``;
    ``seconds`` is the planner's time (FLOPs over a measured device rate)."""
    info, size = plan.info, plan.size
    lengths = sorted({batch.length for batch in plan.batches})
    lines = [
        f"{plan.job.source} -> {plan.job.output}",
        f"  input   {info.width}x{info.height}, {plan.frames} frame(s), {float(info.fps):.3f} fps, "
        f"{info.bit_depth}-bit{', alpha' if info.has_alpha else ''}"
        f"{', audio' if info.has_audio else ''}",
        f"  output  {size.output[1]}x{size.output[0]} (networks see {size.padded[1]}x"
        f"{size.padded[0]}, padded then cropped)",
        f"  batches {len(plan.batches)} of {'/'.join(map(str, lengths))} frame(s)",
    ]
    if plan.job.output.exists():
        lines.append("  note    the output exists (needs --overwrite or --skip-existing)")
    if peak is not None:
        of = f" of {amount(available)} available" if available is not None else ""
        lines.append(f"  memory  about {amount(peak)} on the device{of} (rough estimate)")
        if available is not None and peak > available:
            lines.append(f"  warning will not fit; try {advice}")
    if seconds is not None:
        lines.append(f"  time    about {duration(seconds)} (rough: planned FLOPs over this "
                     "device's measured matrix-multiply rate)")  # fmt: skip
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """``seconds`` as people read it: 45 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

