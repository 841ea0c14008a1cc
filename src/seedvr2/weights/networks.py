"""Build a DiT or VAE for a weights file and load it: config from the file, weights strictly.

Our files (``seedvr2 train`` exports, the bundled model) carry their config as JSON under the
safetensors metadata key ``config``. Released files carry none; their structure is recognised from
key names and shapes (the 3B and 7B DiTs, the released VAE). Networks are built on the ``meta``
device and the file's tensors are assigned, so a 7B model is never allocated twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from seedvr2.errors import CheckpointError
from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.models.vae import VideoAutoencoder

from .formats import Device, checked_path, load_state_dict_file
from .gguf_files import CONFIG_KEY, GGUFFile
from .loading import CheckpointSummary, load_into, state_dict_summary

_RELEASED_DITS = {("3B", 2560, 32): "3b", ("7B", 3072, 36): "7b"}


def file_config(path: str | Path) -> dict[str, Any] | None:
    """The JSON config in a safetensors (``config``) or GGUF (``seedvr2.config``) file, or None."""
    path = checked_path(path)
    if path.suffix == ".gguf":
        text = GGUFFile(path).metadata().get(CONFIG_KEY)
    elif path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get("config")
    else:
        return None
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: the 'config' metadata is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the 'config' metadata is not a JSON object")
    return config


def _dit_config(path: Path, summary: CheckpointSummary) -> str | dict[str, Any]:
    if summary.kind != "dit":
        raise CheckpointError(f"{path} is not a DiT checkpoint: it looks like {summary}")
    stored = file_config(path)
    if stored is not None:
        return stored
    preset = _RELEASED_DITS.get((summary.structure, summary.width, summary.depth))
    if preset is None:
        raise CheckpointError(
            f"{path}: {summary}; it is not a released size and stores no config. Export it with "
            "`seedvr2 train export` (which stores the config), or use the released files"
        )
    return preset


def _vae_config(path: Path, summary: CheckpointSummary) -> str | dict[str, Any]:
    if summary.kind != "vae":
        raise CheckpointError(f"{path} is not a VAE checkpoint: it looks like {summary}")
    return file_config(path) or "released"


def load_dit(path: str | Path, dtype: torch.dtype, device: Device = "cpu") -> SeedVR2DiT:
    """The DiT of ``path`` with its weights in ``dtype`` on ``device``, in eval mode."""
    state = load_state_dict_file(path, dtype=dtype, device=device)
    config = _dit_config(Path(path), state_dict_summary(state))
    model = build_dit(config, device="meta")
    load_into(model, state)
    return model.eval().requires_grad_(False)


def load_vae(path: str | Path, dtype: torch.dtype, device: Device = "cpu") -> VideoAutoencoder:
    """The VAE of ``path`` with its weights in ``dtype`` on ``device``, in eval mode."""
    state = load_state_dict_file(path, dtype=dtype, device=device)
    config = _vae_config(Path(path), state_dict_summary(state))
    model = build_vae(config, device="meta")
    load_into(model, state)
    return model.eval().requires_grad_(False)
