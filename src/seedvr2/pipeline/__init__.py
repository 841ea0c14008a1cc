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
from .restorer import Restorer

__all__ = [
    "InputSelection",
    "Job",
    "JobResult",
    "OutputSettings",
    "RestoreOptions",
    "Restorer",
    "RuntimeOptions",
    "VAETiling",
    "parse_time",
    "plan_jobs",
    "restore_file",
    "run_jobs",
]
