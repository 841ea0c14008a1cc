"""Build a DiT or VAE for a weights file and load it: config from the file, weights strictly.

Our files (``seedvr2 train`` exports, the bundled model) carry their config as JSON under the
safetensors metadata key ``config``. Released files carry none; their structure is recognised from
key names and shapes (the 3B and 7B DiTs, the released VAE). Before anything is built or read,
the config is checked against the tensor names and shapes of the file's header (depth, width,
blocks), then the network built on the ``meta`` device is checked against them key by key; only
then is the data loaded and assigned, so a 7B model is never allocated twice and a small file
claiming a huge config is refused at once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from seedvr2.errors import CheckpointError, ConfigError
from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit import DiTConfig, SeedVR2DiT, resolve_dit_config
from seedvr2.models.vae import VAEConfig, VideoAutoencoder, resolve_vae_config
from seedvr2.models.vae.space_to_depth import recognise_space_to_depth

from .formats import Device, checked_path, load_state_dict_file, tensor_header
from .gguf_files import CONFIG_KEY, GGUFFile
from .loading import CheckpointSummary, check_fits, load_into, state_dict_summary

_RELEASED_DITS = {("3B", 2560, 32): "3b", ("7B", 3072, 36): "7b"}
_FIRST_BLOCK_RESNET = re.compile(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")


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


def _dit_differences(config: DiTConfig, summary: CheckpointSummary, _) -> list[tuple]:
    mlp = {"3B": "swiglu", "7B": "gelu"}.get(summary.structure)  # SwiGLU or GELU MLP keys
    return [
        ("num_layers", config.num_layers, "blocks", summary.depth),
        ("dim", config.dim, "width", summary.width),
        ("mm_layers", config.mm_layers, "two-stream blocks", summary.two_stream_depth),
        ("mlp_type", config.mlp_type, "MLP", mlp),
    ]


def _vae_differences(config: VAEConfig, summary: CheckpointSummary, keys) -> list[tuple]:
    resnets = {m.group(1) for k in keys if (m := _FIRST_BLOCK_RESNET.match(k))}
    return [
        ("len(block_channels)", len(config.block_channels), "down blocks", summary.depth),
        ("block_channels[0]", config.block_channels[0], "base channels", summary.width),
        ("layers_per_block", config.layers_per_block, "resnets per block", len(resnets)),
    ]


_KINDS = {  # kind -> (config from file and summary, resolve, differences, build)
    "dit": (_dit_config, resolve_dit_config, _dit_differences, build_dit),
    "vae": (_vae_config, resolve_vae_config, _vae_differences, build_vae),
}


def _config(kind: str, path: Path, summary: CheckpointSummary) -> DiTConfig | VAEConfig:
    find_config, resolve, _, _ = _KINDS[kind]
    try:
        return resolve(find_config(path, summary))
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its stored {kind.upper()} config is invalid: {error}") from None


def network_config(kind: str, path: str | Path) -> DiTConfig | VAEConfig:
    """The config the ``kind`` ("dit" or "vae") network of ``path`` is built with; reads the
    file's header only."""
    path = Path(path)
    return _config(kind, path, state_dict_summary(tensor_header(path)))


def _load(kind: str, path: str | Path, dtype: torch.dtype, device: Device) -> nn.Module:
    """Check ``path``'s config and tensor names/shapes (header only), then build and load."""
    _, _, differences, build = _KINDS[kind]
    path = Path(path)
    header = tensor_header(path)  # meta tensors: no data read yet
    summary = state_dict_summary(header)
    config = _config(kind, path, summary)
    wrong = [
        f"{name} {claimed} in the config, {found} {what} in the tensors"
        for name, claimed, what, found in differences(config, summary, header)
        if claimed != found
    ]
    if wrong:  # refused before building: a config claiming 20,000 layers builds for minutes
        raise CheckpointError(
            f"{path}: its stored config does not match its tensors ({'; '.join(wrong)}); "
            "the file is inconsistent: re-export or re-download it"
        )
    model = build(config, device="meta")
    check_fits(model.state_dict(), header)
    load_into(model, load_state_dict_file(path, dtype=dtype, device=device))
    return model.eval().requires_grad_(False)


def load_dit(path: str | Path, dtype: torch.dtype, device: Device = "cpu") -> SeedVR2DiT:
    """The DiT of ``path`` with its weights in ``dtype`` on ``device``, in eval mode."""
    return _load("dit", path, dtype, device)


def load_vae(path: str | Path, dtype: torch.dtype, device: Device = "cpu") -> VideoAutoencoder:
    """The VAE of ``path`` with its weights in ``dtype`` on ``device``, in eval mode (with the
    direct path of an exact space-to-depth VAE turned on when its weights are one)."""
    vae = _load("vae", path, dtype, device)
    recognise_space_to_depth(vae)
    return vae
