"""The JSON run report: settings, model, and per-file results with timings."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from seedvr2 import __version__

from .jobs import JobResult
from .restorer import Restorer


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def build_report(restorer: Restorer, results: list[JobResult], extra: dict[str, Any]) -> dict:
    """Everything needed to reproduce and audit a run."""
    return {
        "seedvr2": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(restorer.device),
        "dtype": str(restorer.dtype).removeprefix("torch."),
        "model": _plain(restorer.model.files),
        "options": _plain(restorer.options),
        "runtime": _plain(restorer.runtime),
        **_plain(extra),
        "files": [
            {
                "input": str(r.job.source),
                "output": str(r.job.output),
                "status": r.status,
                "frames": r.frames,
                "seconds": round(r.seconds, 3),
                "fps": round(r.fps, 3),
                "size": r.size,
                "message": r.message,
            }
            for r in results
        ],
    }


def write_report(path: str | Path, report: dict) -> Path:
    """Write ``report`` as JSON under a temporary name, then rename it into place."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temp, path)
    return path
