"""Checkpoint files and the metrics log."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from seedvr2.errors import CheckpointError
from seedvr2.train.checkpoint import CheckpointManager, is_training_checkpoint, load_checkpoint
from seedvr2.train.logger import MetricLogger


def test_saves_are_atomic_and_only_the_last_n_are_kept(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        manager.save(step, {"models": {}, "step": step})
    assert [p.name for p in manager.all()] == ["step_00000020.pt", "step_00000030.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000020.pt", "step_00000030.pt"]
    assert load_checkpoint(manager.latest())["step"] == 30


class _FailsToSave:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_a_failed_write_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    with pytest.raises(RuntimeError, match="disk full"):
        manager.save(5, {"models": {}, "bad": _FailsToSave()})
    assert list(tmp_path.iterdir()) == []


def test_other_files_are_rejected_with_a_clear_error(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    assert not is_training_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a seedvr2 training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_resumed_log_drops_rows_past_the_checkpoint(tmp_path: Path) -> None:
    logger = MetricLogger(tmp_path, enabled=True)
    for step in range(1, 6):
        logger.log(step, {"loss": float(step)})
    logger.close()
    resumed = MetricLogger(tmp_path, enabled=True, resume_step=3)
    resumed.log(4, {"loss": 40.0})
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["loss"]) for r in rows] == [("1", "1.0"), ("2", "2.0"), ("3", "3.0"),
                                                      ("4", "40.0")]
