"""Training checkpoints: full state gathered on rank 0, written atomically, last N kept.

A checkpoint is one ``torch.save`` file ``step_00001000.pt`` holding the resolved run config, the
step, full (unsharded) model and optimiser state dicts keyed by name, extra stage state and every
rank's RNG state. It is written to a temporary name in the same folder and renamed, so a crash
never leaves a truncated ``step_*.pt``; resuming picks the newest. Full state dicts make a
checkpoint loadable with any number of processes and any of none/DDP/FSDP (spec style rule 8).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from seedvr2.errors import CheckpointError

CHECKPOINT_NAME = re.compile(r"step_(\d{8})\.pt")  # training checkpoints
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
_SCATTER = StateDictOptions(full_state_dict=True)
_PARTIAL = StateDictOptions(full_state_dict=True, strict=False)


class CheckpointManager:
    """Numbered checkpoint files in one folder."""

    def __init__(self, folder: str | Path, keep_last: int) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}.pt"

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if CHECKPOINT_NAME.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_NAME.fullmatch(p.name).group(1)))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        """Write ``payload`` as the checkpoint of ``step`` (temp file + rename), then prune."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(step)
        temp = self.folder / f".{final.name}.tmp{os.getpid()}"
        try:
            with open(temp, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        for old in self.all()[:-self.keep_last]:
            old.unlink()
        return final


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is the user's to fix
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(payload, dict) or "models" not in payload:
        raise CheckpointError(f"{path} is not a seedvr2 training checkpoint (no 'models' entry)")
    return payload


def is_training_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a file :class:`CheckpointManager` wrote (a zip with a ``models`` key)."""
    path = Path(path)
    if path.suffix != ".pt" or not path.is_file():
        return False
    try:
        payload = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # not a torch zip file: a released weights file in another format
        return False
    return isinstance(payload, dict) and "models" in payload


def model_state(module: nn.Module, keys: frozenset[str] | None = None) -> dict[str, torch.Tensor]:
    """Full state dict (only ``keys`` when given) on rank 0 (empty elsewhere under FSDP); a
    collective under FSDP."""
    state = get_model_state_dict(module, options=_GATHER)
    return state if keys is None else {k: v for k, v in state.items() if k in keys}


def load_model_state(
    module: nn.Module, state: dict[str, torch.Tensor], what: str,
    keys: frozenset[str] | None = None,
) -> None:
    """Strictly load a full state dict into a plain, DDP or FSDP2 module; with ``keys``, a
    partial one that must hold exactly those keys (the rest of the module is kept)."""
    if keys is not None and state.keys() != keys:
        wrong = sorted(keys ^ state.keys())
        raise CheckpointError(f"{what} does not fit the model: {len(wrong)} adapter weights "
                              f"differ (e.g. {wrong[0]}); resume with the run's own config")
    options = _SCATTER if keys is None else _PARTIAL
    try:
        set_model_state_dict(module, state, options=options)
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"{what} does not fit the model: {error}") from None


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Full optimiser state keyed by parameter names (rank 0); a collective under FSDP."""
    return get_optimizer_state_dict(module, optimizer, options=_GATHER)


def load_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load ``state``; parameters without saved state start fresh, as they did before the
    save: Adam creates a parameter's state at its first gradient, and a parameter whose output
    nothing reads (the 7B structure's last text update) never gets one."""
    set_optimizer_state_dict(module, optimizer, state, options=_PARTIAL)


def rng_state() -> dict[str, Any]:
    """This process's global torch RNG states (CPU and current CUDA device)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
