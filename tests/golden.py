"""Access to a golden-vector directory (format: ../shared/golden/README.md).

The directory comes from ``SEEDVR2_GOLDEN_DIR`` (default ``../shared/golden`` beside the repo).
Test parameters are read from whatever the directory holds, so any set of that format works.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]


def golden_dir() -> Path:
    return Path(os.environ.get("SEEDVR2_GOLDEN_DIR", REPO.parent / "shared" / "golden"))


def required() -> bool:
    """Whether a missing golden file is a failure: in CI (``CI`` set to true, as CI services do)
    or when ``SEEDVR2_GOLDEN_DIR`` names the directory explicitly."""
    in_ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return in_ci or "SEEDVR2_GOLDEN_DIR" in os.environ


def golden_path(name: str) -> Path:
    """Path of a golden file; a missing one fails the test when :func:`required`, else skips it
    (a local checkout without ``../shared``)."""
    path = golden_dir() / name
    if not path.exists():
        why = "SEEDVR2_GOLDEN_DIR is set" if "SEEDVR2_GOLDEN_DIR" in os.environ else "CI is set"
        if required():
            pytest.fail(f"no golden file {path}, and {why}: goldens are required", pytrace=False)
        pytest.skip(f"no golden file {path} (set SEEDVR2_GOLDEN_DIR to a golden directory)")
    return path


@cache
def tensor_names(name: str) -> tuple[str, ...]:
    path = golden_dir() / name
    if not path.exists():
        return ()
    with safe_open(path, "pt") as f:
        return tuple(f.keys())


def matching(name: str, pattern: str) -> list[str]:
    """First regex group of every tensor name in ``name`` that matches ``pattern``."""
    found = (re.fullmatch(pattern, key) for key in tensor_names(name))
    return sorted({m.group(1) for m in found if m}) or ["<absent>"]


def load(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (float32 weights) and the metadata of a golden safetensors file."""
    with safe_open(golden_path(name), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = f.metadata() or {}
    for key, value in tensors.items():
        if key.startswith("w.") and value.is_floating_point():
            tensors[key] = value.float()
    return tensors, meta


def weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[2:]: v for k, v in tensors.items() if k.startswith("w.")}


def inputs(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[3:]: v for k, v in tensors.items() if k.startswith("in.")}


def json_keys(name: str) -> list[str]:
    path = golden_dir() / name
    return list(json.loads(path.read_text())) if path.exists() else ["<absent>"]


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.shape == ref.shape, (tuple(out.shape), tuple(ref.shape))
    return float((out.double() - ref.double()).norm() / ref.double().norm())
