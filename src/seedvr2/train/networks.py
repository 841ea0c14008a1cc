"""Building the trained networks: seeded init, starting weights, device, checkpointing flag.

Starting weights (``model.init``, ``latent.vae_checkpoint``, ``adversarial.discriminator_init``)
are either a training checkpoint of an earlier stage (its EMA weights when it has them), a
weights file, or a model as ``seedvr2 restore --model`` names it (a preset, a model folder, a repo
id), read through :mod:`seedvr2.weights` in any of its formats; loading is strict. With
``model.lora`` the loaded DiT becomes a frozen base carrying a fresh PEFT adapter.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import torch
from torch import nn

from seedvr2.digests import file_sha256
from seedvr2.errors import CheckpointError, ConfigError, OutputError, SeedVR2Error
from seedvr2.models import build_dit
from seedvr2.models.dit import DiTConfig, SeedVR2DiT
from seedvr2.models.dit.passthrough import make_passthrough
from seedvr2.weights import ModelFiles, load_into, load_state_dict_file, locate_model
from seedvr2.weights.adapters import (
    LORA_TARGETS,
    add_adapter,
    check_adapter_folder,
    lora_config,
    save_adapter,
    to_peft_format,
)
from seedvr2.weights.networks import load_dit
from seedvr2.weights.writing import save_safetensors, write_atomically

from . import rng
from .checkpoint import CheckpointManager, is_training_checkpoint, load_checkpoint
from .config import PASSTHROUGH, LoRAConfig

Module = TypeVar("Module", bound=nn.Module)

# Which network of a training checkpoint starts a new run, in order of preference.
_PREFERRED = ("dit_ema", "dit", "generator_ema", "generator", "vae_ema", "vae")


def model_source(spec: str | Path, what: str) -> ModelFiles | None:
    """The files of the model ``spec`` names as ``restore --model`` takes it (preset, model
    folder, repo id), or None for a file or a run folder (one holding ``checkpoints/``)."""
    path = Path(spec).expanduser()
    if path.is_file() or (path / "checkpoints").is_dir():
        return None
    try:
        return locate_model(str(spec))
    except SeedVR2Error as error:
        raise CheckpointError(f"{what}: {error}") from None


def weights_file(spec: str | Path, role: Literal["dit", "vae"], what: str) -> Path | None:
    """The weights file ``spec`` names (a file, or a model's ``role`` file), or None when it is
    a training checkpoint or a run folder."""
    path = Path(spec).expanduser()
    if path.is_file():
        return None if is_training_checkpoint(path) else path
    files = model_source(spec, what)
    return None if files is None else getattr(files, role)


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


def starting_state(
    path: str | Path, what: str, role: Literal["dit", "vae"] = "dit"
) -> dict[str, torch.Tensor]:
    """FP32 weights from a training checkpoint or run folder, a weights file or a model."""
    file = weights_file(path, role, what)
    if file is not None:
        return load_state_dict_file(file, dtype=torch.float32)
    models = load_checkpoint(resolve_checkpoint(path, what))["models"]
    return {k: v.float() for k, v in models[preferred_network(models, what)].items()}


def _check_export_output(output: Path, checkpoint: Path, overwrite: bool) -> None:
    """Refuse an output that would replace something, before the checkpoint is read: a file, or
    a folder (where only a LoRA run's adapter goes: :func:`check_adapter_folder`)."""
    if output.exists() and output.resolve() == checkpoint.resolve():
        raise OutputError(f"{output} is the checkpoint itself; write the weights elsewhere")
    if output.is_dir():
        check_adapter_folder(output, overwrite)
        return
    if not output.parent.is_dir():
        raise OutputError(f"folder {output.parent} does not exist; create it first")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists; pass --overwrite to replace it")


def export_weights(
    source: str | Path, output: str | Path, network: str | None = None, overwrite: bool = False,
    color_correction: str | None = None,
) -> Path:
    """Write one network of a training checkpoint (default: the preferred, EMA first) as
    safetensors, with its resolved config as JSON in the metadata (spec style rule 8); of a LoRA
    run, its adapter as a PEFT folder tagged with the base DiT's SHA-256.

    ``color_correction`` replaces the DiT config's ``color_correction`` (the one restore applies
    to the model's output unless told otherwise), for a model trained before it was set.

    Files are written atomically, with the umask's permissions. An existing output is refused
    unless ``overwrite``; an adapter folder then has only its adapter files replaced.

    Raises:
        CheckpointError: an unreadable checkpoint, or one without ``network``.
        ConfigError: ``color_correction`` for a network that is not a DiT, or not a known name.
        OutputError: ``output`` exists without ``overwrite``, is the checkpoint, is a folder
            where a file goes (or the reverse), or its folder does not exist.
    """
    path = resolve_checkpoint(source, "export")
    output = Path(output)
    _check_export_output(output, path, overwrite)
    payload = load_checkpoint(path)
    name = network or preferred_network(payload["models"], "export")
    if name not in payload["models"]:
        raise CheckpointError(f"{path} has no network {name!r}; it has {sorted(payload['models'])}")
    trained = name.removesuffix("_ema")
    config = payload["model_configs"].get(trained, {})
    state = {k: v.contiguous() for k, v in payload["models"][name].items()}
    adapter = payload["model_configs"].get(f"{trained}_adapter")
    if adapter is not None:
        settings = LoRAConfig(**{k: v for k, v in adapter.items() if k not in _RECORDED})
        return save_adapter(output, peft_settings(settings), to_peft_format(state, trained),
                            adapter["base_sha256"], adapter["base"], overwrite)
    if output.is_dir():
        raise OutputError(f"{output} is a folder; name the .safetensors file to write")
    if color_correction is not None:
        if "patch_size" not in config:  # discriminators and VAEs have no colour correction
            raise ConfigError(f"--color-correction is for a DiT; {name!r} of {path} is not one")
        config = DiTConfig.from_dict({**config, "color_correction": color_correction}).to_dict()
    metadata = {"config": json.dumps(config), "network": name, "step": str(payload["step"])}
    return write_atomically(output, lambda temp: save_safetensors(state, temp, metadata))


def load_weights(
    module: nn.Module, path: str | Path, what: str, role: Literal["dit", "vae"] = "dit"
) -> None:
    """Strictly load starting weights into an unwrapped module (``what`` names the config key)."""
    load_into(module, starting_state(path, what, role))


def seeded(seed: int, index: int, build: Callable[[], Module]) -> Module:
    """Run ``build`` with the global RNG seeded from (run seed, index), leaving it as it was.

    Every process must initialise identical weights: FSDP2 shards without broadcasting.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng.derive_seed(seed, "init", index))
        return build()


def starting_dit(
    dit: str | dict | None, init: str | None, what: str, seed: int, index: int
) -> SeedVR2DiT:
    """A trainable fp32 DiT on the CPU: seeded random init, then ``init`` weights if given
    (``dit`` None: built as the ``init`` file says)."""
    if dit is None:
        file = weights_file(init, "dit", what)
        if file is None:
            raise ConfigError(f"model.dit: null takes the structure from a weights file or "
                              f"model; {what} {init} is a training checkpoint: name its DiT")
        return load_dit(file, torch.float32).train().requires_grad_(True)
    model = seeded(seed, index, lambda: build_dit(dit))
    if init == PASSTHROUGH:
        make_passthrough(model)
    elif init is not None:
        load_weights(model, init, what)
    return model


def freeze(model: SeedVR2DiT, prefixes: tuple[str, ...]) -> None:
    """Keep the parameters whose names start with one of ``prefixes`` fixed (``model.frozen``)."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            raise ConfigError(f"model.frozen: {prefix!r} names no parameter of the DiT; names "
                              f"start with {sorted({n.split('.')[0] for n in names})}")
        for name, param in model.named_parameters():
            if name in matched:
                param.requires_grad_(False)


def adapt(model: SeedVR2DiT, lora: LoRAConfig, seed: int, index: int, adapter: str) -> SeedVR2DiT:
    """Freeze ``model`` as a LoRA base in ``lora.base_dtype`` and add a new seeded adapter
    ``adapter``, the only trainable weights, kept in fp32 (PEFT gives it the base's dtype;
    bf16 weights would round small Adam updates away)."""
    model.to(base_dtype(lora))
    seeded(seed, index, lambda: add_adapter(model, peft_settings(lora), adapter))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def base_dtype(lora: LoRAConfig) -> torch.dtype:
    """The dtype of a LoRA run's frozen base weights."""
    return torch.bfloat16 if lora.base_dtype == "bf16" else torch.float32


def shared_base_twin(model: SeedVR2DiT) -> SeedVR2DiT:
    """A second module tree over ``model``'s parameters (one copy of the weights in memory), with
    its own buffers; adapters added to either afterwards stay its own."""
    return copy.deepcopy(model, {id(p): p for p in model.parameters()})


def build_trained_dit(
    dit: str | dict | None, init: str | None, what: str, seed: int, index: int,
    checkpointing: bool, device: torch.device, lora: LoRAConfig | None = None,
    adapter: str = "default",
) -> SeedVR2DiT:
    """A fp32 DiT on ``device`` (see :func:`starting_dit`). With ``lora``: the base frozen (in
    its ``base_dtype``) and a new seeded adapter named ``adapter`` (see :func:`adapt`)."""
    model = starting_dit(dit, init, what, seed, index)
    model.gradient_checkpointing = checkpointing
    if lora is not None:
        adapt(model, lora, seed, index, adapter)
    return model.to(device)


_RECORDED = ("base", "base_sha256")  # adapter record entries that are not LoRAConfig fields


def peft_settings(lora: LoRAConfig) -> object:
    """PEFT's ``LoraConfig`` of the run's settings (all projections when no targets are named)."""
    return lora_config(lora.rank, lora.alpha, lora.targets or LORA_TARGETS, lora.dropout)


def adapter_record(lora: LoRAConfig, init: str, what: str) -> dict[str, object]:
    """What ``export`` needs to write a run's adapter: the settings and the base DiT file's
    SHA-256 (so the adapter is refused on another base)."""
    file = weights_file(init, "dit", what)
    if file is None:
        raise ConfigError(f"{what}: an adapter must sit on weights others can load; {init} is a "
                          "training checkpoint: `seedvr2 export` it and start from the file")
    return {**dataclasses.asdict(lora), "targets": list(lora.targets), "base": str(init),
            "base_sha256": file_sha256(file)}


def frozen(module: Module) -> Module:
    """Evaluation mode, no gradients (teachers, EMA copies)."""
    return module.eval().requires_grad_(False)


def set_trainable(params: list[nn.Parameter], flag: bool) -> None:
    """Freeze/unfreeze exactly ``params`` (D during the G update; spec §2 "Generator step")."""
    for p in params:
        p.requires_grad_(flag)
