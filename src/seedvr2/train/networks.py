"""Building the trained networks: seeded init, starting weights, device, checkpointing flag.

Starting weights (``model.init``, ``latent.vae_checkpoint``, ``adversarial.discriminator_init``)
are either a training checkpoint of an earlier stage (its EMA weights when it has them) or a
released weights file read through :mod:`seedvr2.weights`; loading is strict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import save_file
from torch import nn

from seedvr2.errors import CheckpointError
from seedvr2.models import build_dit
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.weights import load_into, load_state_dict_file

from . import rng
from .checkpoint import CheckpointManager, is_training_checkpoint, load_checkpoint

Module = TypeVar("Module", bound=nn.Module)

# Which network of a training checkpoint starts a new run, in order of preference.
_PREFERRED = ("dit_ema", "dit", "generator_ema", "generator", "vae_ema", "vae")


def resolve_checkpoint(path: str | Path, what: str) -> Path:
    """A checkpoint file, or for a run folder (an ``output_dir``) its newest checkpoint."""
    path = Path(path)
    if not path.is_dir():
        return path
    latest = CheckpointManager(path / "checkpoints", keep_last=1).latest()
    if latest is None:
        raise CheckpointError(f"{what}: {path} holds no checkpoints/step_*.pt")
    return latest


def preferred_network(models: dict[str, dict], what: str) -> str:
    """The network of a training checkpoint that starts a later run (EMA weights first)."""
    for name in _PREFERRED:
        if name in models:
            return name
    raise CheckpointError(f"{what}: the checkpoint holds none of the networks {list(_PREFERRED)}")


def starting_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """FP32 weights from a training checkpoint or run folder, or a released weights file."""
    path = resolve_checkpoint(path, what)
    if is_training_checkpoint(path):
        models = load_checkpoint(path)["models"]
        return {k: v.float() for k, v in models[preferred_network(models, what)].items()}
    return load_state_dict_file(path, dtype=torch.float32)


def export_weights(source: str | Path, output: str | Path, network: str | None = None) -> Path:
    """Write one network of a training checkpoint (default: the preferred, EMA first) as
    safetensors, with its resolved config as JSON in the metadata (spec style rule 8)."""
    path = resolve_checkpoint(source, "export")
    payload = load_checkpoint(path)
    name = network or preferred_network(payload["models"], "export")
    if name not in payload["models"]:
        raise CheckpointError(f"{path} has no network {name!r}; it has {sorted(payload['models'])}")
    config = payload["model_configs"].get(name.removesuffix("_ema"), {})
    state = {k: v.contiguous() for k, v in payload["models"][name].items()}
    metadata = {"config": json.dumps(config), "network": name, "step": str(payload["step"])}
    save_file(state, str(output), metadata=metadata)
    return Path(output)


def load_weights(module: nn.Module, path: str | Path, what: str) -> None:
    """Strictly load starting weights into an unwrapped module (``what`` names the config key)."""
    load_into(module, starting_state(path, what))


def seeded(seed: int, index: int, build: Callable[[], Module]) -> Module:
    """Run ``build`` with the global RNG seeded from (run seed, index), leaving it as it was.

    Every process must initialise identical weights: FSDP2 shards without broadcasting.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng.derive_seed(seed, "init", index))
        return build()


def build_trained_dit(
    dit: str | dict, init: str | None, what: str, seed: int, index: int,
    checkpointing: bool, device: torch.device,
) -> SeedVR2DiT:
    """A fp32 DiT on ``device``: seeded random init, then ``init`` weights if given."""
    model = seeded(seed, index, lambda: build_dit(dit))
    if init is not None:
        load_weights(model, init, what)
    model.gradient_checkpointing = checkpointing
    return model.to(device)


def frozen(module: Module) -> Module:
    """Evaluation mode, no gradients (teachers, EMA copies)."""
    return module.eval().requires_grad_(False)


def set_trainable(params: list[nn.Parameter], flag: bool) -> None:
    """Freeze/unfreeze exactly ``params`` (D during the G update; spec §2 "Generator step")."""
    for p in params:
        p.requires_grad_(flag)
