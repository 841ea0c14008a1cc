"""Restoration pipeline: the :class:`Restorer` API, file jobs, dry-run plans and reports."""

from .jobs import (
    InputSelection,
    Job,
    JobResult,
    OutputSettings,
    parse_time,
    plan_jobs,
    restore_file,
    run_jobs,
)
from .options import RestoreOptions, RuntimeOptions, VAETiling
from .progress import Cancelled, Progress
from .restorer import Restorer

__all__ = [
    "Cancelled",
    "InputSelection",
    "Job",
    "JobResult",
    "OutputSettings",
    "Progress",
    "RestoreOptions",
    "Restorer",
    "RuntimeOptions",
    "VAETiling",
    "parse_time",
    "plan_jobs",
    "restore_file",
    "run_jobs",
]
