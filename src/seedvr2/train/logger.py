"""Metrics of a run: a CSV file always, TensorBoard when the package is installed.

Only rank 0 writes. On resume, CSV rows past the resumed step (logged after the last checkpoint of
the interrupted run) are dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class MetricLogger:
    """Appends ``step, name...`` rows to ``metrics.csv`` and mirrors them to TensorBoard."""

    def __init__(self, folder: str | Path, enabled: bool, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.path = Path(folder) / "metrics.csv"
        self.columns: list[str] | None = None
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            log.info("tensorboard is not installed; logging to %s only", self.path)
        else:
            board = str(Path(folder) / "tensorboard")
            self.writer = SummaryWriter(board, purge_step=resume_step + 1)

    def _truncate(self, resume_step: int) -> None:
        if not self.path.is_file():
            return
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        self.columns = rows[0]
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= resume_step]
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record one row; the first row fixes the CSV columns (later new names go to TB only)."""
        if not self.enabled:
            return
        if self.columns is None:
            self.columns = ["step", *sorted(values)]
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        with open(self.path, "a", newline="") as handle:
            row = [step, *(values.get(name, "") for name in self.columns[1:])]
            csv.writer(handle).writerow(row)
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        log.info("step %d  %s", step, "  ".join(f"{k} {v:.4g}" for k, v in sorted(values.items())))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
