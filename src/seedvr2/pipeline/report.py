"""The JSON run report: versions, settings, model, peak memory, and per-file results with
phase timings and the sha256 of every input and output file."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from seedvr2 import __version__
from seedvr2.digests import tree_sha256

from .jobs import JobResult
from .restorer import Restorer
from .runtime import peak_memory


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


def file_digests(path: Path) -> str | dict[str, str] | None:
    """sha256 of a file, of each file in a folder (by relative name), or None if it is missing."""
    return tree_sha256(path) if path.exists() else None


def build_report(restorer: Restorer | None, results: list[JobResult], extra: dict[str, Any]) -> dict:
    """Everything needed to reproduce and audit a run; ``restorer`` is None when no model was
    loaded (every job refused before), and the model's fields are then absent."""
    model = {} if restorer is None else {
        "devices": [str(d) for d in restorer.devices],
        "peak_memory": peak_memory(restorer.devices),
        "dtype": str(restorer.dtype).removeprefix("torch."),
        "model": _plain(restorer.model.files),
        "options": {**_plain(restorer.options), "color": restorer.color_correction},
        "runtime": _plain(restorer.runtime),
    }  # fmt: skip
    return {
        "versions": {
            "seedvr2": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "av": av.__version__,
            "cuda": torch.version.cuda,
        },
        **model,
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
                "timings": {k: round(v, 3) for k, v in r.timings.items()},
                "sha256": {
                    "input": file_digests(r.job.source),
                    "output": file_digests(r.job.output) if r.status != "failed" else None,
                },
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
