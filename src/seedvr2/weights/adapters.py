"""LoRA adapters of the DiT through the PEFT library: inject, save and read PEFT's format, merge.

An adapter folder is what PEFT's ``save_pretrained`` writes: ``adapter_config.json`` (a
``LoraConfig``) and ``adapter_model.safetensors`` (keys ``base_model.model.<module>.lora_A.weight``).
Ours also records, in the safetensors metadata, the SHA-256 of the DiT file it was trained on
(``seedvr2.base_sha256``), so an adapter is refused on any other base, and the SHA-256 of the
config written with it (``seedvr2.config_sha256``), so weights and a config of two different
exports (an export stopped between its two files) are refused instead of mixed. PEFT is an
optional dependency (``pip install "seedvr2[lora]"``), imported only when an adapter is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from seedvr2.errors import CheckpointError, ConfigError, InputError, OutputError

from .writing import save_safetensors, write_atomically

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
BASE_SHA256_KEY = "seedvr2.base_sha256"  # safetensors metadata: the DiT file it was made for
BASE_ORIGIN_KEY = "seedvr2.base"  # ... and what that file was called (for messages)
CONFIG_SHA256_KEY = "seedvr2.config_sha256"  # ... and the adapter_config.json written with it
PEFT_PREFIX = "base_model.model."  # PeftModel's key prefix in saved adapters
# Targetable DiT projections: attention and MLP linears of every block (mlp.proj_in_gate: 3B).
LORA_TARGETS = ("attn.proj_qkv", "attn.proj_out", "mlp.proj_in", "mlp.proj_in_gate",
                "mlp.proj_out")
_STREAMS = "(vid|txt|all)"  # DualStream copies: separate video/text weights, or shared


def peft() -> ModuleType:
    """The PEFT library, or a one-line error saying how to install it."""
    try:
        import peft as library
    except ImportError:
        raise InputError('LoRA adapters need the PEFT library: pip install "seedvr2[lora]"') from None
    return library


def target_pattern(targets: Sequence[str]) -> str:
    """PEFT ``target_modules`` regex (full match) of the named projections in every block."""
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown or not targets:
        raise ConfigError(f"model.lora.targets: {unknown or 'none'} not among {list(LORA_TARGETS)}")
    parts = []
    for target in targets:
        group, name = target.split(".")
        parts.append(rf"attn\.{name}\.{_STREAMS}" if group == "attn"
                     else rf"mlp\.{_STREAMS}\.{name}")
    return rf"blocks\.\d+\.({'|'.join(parts)})"


def lora_config(rank: int, alpha: float, targets: Sequence[str], dropout: float = 0.0) -> Any:
    """A PEFT ``LoraConfig`` of the DiT projections ``targets``."""
    return peft().LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=target_pattern(targets))


def add_adapter(model: nn.Module, config: Any, name: str) -> nn.Module:
    """Inject adapter ``name`` (B = 0: the output is unchanged); PEFT freezes everything else."""
    peft().inject_adapter_in_model(config, model, adapter_name=name)
    return model


def adapter_keys(model: nn.Module) -> list[str]:
    """Names of the adapter parameters of a model (``...lora_A.<adapter>.weight``)."""
    return [n for n, _ in model.named_parameters() if ".lora_" in n]


def to_peft_format(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Module state keys ``X.lora_A.<name>.weight`` of one adapter as PEFT saves them."""
    pattern = re.compile(rf"(.*\.lora_[AB])\.{re.escape(name)}\.(weight|bias)")
    out = {}
    for key, value in state.items():
        match = pattern.fullmatch(key)
        if match is not None:
            out[f"{PEFT_PREFIX}{match.group(1)}.{match.group(2)}"] = value.contiguous()
    if not out:
        raise CheckpointError(f"no weights of adapter {name!r} in the state given")
    return out


def check_adapter_folder(folder: Path, overwrite: bool) -> None:
    """Refuse to write an adapter into ``folder`` when that would replace what is there.

    Raises:
        OutputError: ``folder`` is a file, holds files without ``overwrite``, holds a folder
            where an adapter file goes, or its parent folder does not exist.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; an adapter is written as a folder, choose "
                          "another output")
    if not folder.parent.is_dir():
        raise OutputError(f"folder {folder.parent} does not exist; create it first")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError(f"{folder} exists and is not empty; pass --overwrite to replace its "
                          f"{CONFIG_FILE} and {WEIGHTS_FILE} (nothing else in it is touched)")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if (folder / name).is_dir():
            raise OutputError(f"{folder / name} is a folder; write the adapter elsewhere")


def _config_bytes(config: Any, folder: Path) -> bytes:
    """PEFT's ``adapter_config.json`` of ``config`` (PEFT writes it into a scratch folder)."""
    with tempfile.TemporaryDirectory(prefix=f".{CONFIG_FILE}.", dir=folder) as scratch:
        config.save_pretrained(scratch)
        return (Path(scratch) / CONFIG_FILE).read_bytes()


def save_adapter(
    folder: str | Path, config: Any, weights: dict[str, torch.Tensor], base_sha256: str,
    base: str, overwrite: bool = False,
) -> Path:
    """Write an adapter folder in PEFT's format, tagged with its base DiT's SHA-256.

    Each of the two files is written atomically, the weights tagged with the config's SHA-256
    (:func:`read_adapter` refuses a pair from two exports). An existing folder holding files is
    refused unless ``overwrite``; then only the adapter's two files are replaced, nothing else.

    Raises:
        OutputError: see :func:`check_adapter_folder`; the folder cannot be written.
    """
    folder = Path(folder)
    check_adapter_folder(folder, overwrite)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the adapter folder {folder} ({error.strerror})") from None
    config.base_model_name_or_path = base
    text = _config_bytes(config, folder)
    metadata = {"format": "pt", BASE_SHA256_KEY: base_sha256, BASE_ORIGIN_KEY: base,
                CONFIG_SHA256_KEY: hashlib.sha256(text).hexdigest()}
    write_atomically(folder / WEIGHTS_FILE,
                     lambda temp: save_safetensors(weights, temp, metadata))
    write_atomically(folder / CONFIG_FILE, lambda temp: temp.write_bytes(text))
    return folder


@dataclass(frozen=True)
class Adapter:
    """An adapter folder as read: PEFT config, weights (PEFT keys), the base it was made for."""

    path: Path
    config: Any  # peft.LoraConfig
    weights: dict[str, torch.Tensor]
    base_sha256: str | None  # None: made elsewhere, the base cannot be checked
    base: str


def read_adapter(folder: str | Path) -> Adapter:
    """Read an adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    folder = Path(folder).expanduser()
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not (config_file.is_file() and weights_file.is_file()):
        raise InputError(f"--lora {folder}: not an adapter folder (needs {CONFIG_FILE} and "
                         f"{WEIGHTS_FILE}, as `seedvr2 export` writes)")
    try:
        text = config_file.read_bytes()
        values = json.loads(text)
        config = peft().PeftConfig.from_peft_type(**values)
        with safe_open(str(weights_file), framework="pt") as handle:
            metadata = handle.metadata() or {}
        weights = load_file(str(weights_file))
    except (ValueError, TypeError, KeyError, OSError) as error:  # JSON, config fields, file
        raise CheckpointError(f"cannot read the adapter {folder}: {error}") from None
    expected = metadata.get(CONFIG_SHA256_KEY)
    if expected is not None and hashlib.sha256(text).hexdigest() != expected:
        raise CheckpointError(f"{folder}: {CONFIG_FILE} is not the config its {WEIGHTS_FILE} was "
                              "written with (an export stopped between the two files?); export "
                              "the adapter again with --overwrite")
    if getattr(config, "peft_type", None) != peft().PeftType.LORA:
        raise CheckpointError(f"{folder} is a {config.peft_type} adapter; only LoRA is supported")
    return Adapter(folder, config, weights, metadata.get(BASE_SHA256_KEY),
                   metadata.get(BASE_ORIGIN_KEY, str(config.base_model_name_or_path)))


def load_adapter(model: nn.Module, adapter: Adapter, name: str) -> None:
    """Inject ``adapter`` into ``model`` as ``name`` and load its weights (all must fit)."""
    add_adapter(model, adapter.config, name)
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in adapter.weights.items()}
    result = peft().set_peft_model_state_dict(model, state, adapter_name=name)
    missing = [k for k in result.missing_keys if f".{name}." in k]
    if result.unexpected_keys or missing:
        raise CheckpointError(
            f"adapter {adapter.path} does not fit this DiT: {len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected weights (e.g. "
            f"{(missing or result.unexpected_keys)[0]}); use the base it was trained for")


def parse_adapter(text: str) -> tuple[Path, float]:
    """``ADAPTER[:SCALE]`` -> (folder, scale); the scale defaults to 1."""
    head, sep, tail = text.rpartition(":")
    if sep:
        try:
            return Path(head), float(tail)
        except ValueError:
            pass  # a colon inside the path
    return Path(text), 1.0


def check_base(adapter: Adapter, base_sha256: str, base: str) -> None:
    """Refuse an adapter tagged with another base DiT's SHA-256."""
    if adapter.base_sha256 is not None and adapter.base_sha256 != base_sha256:
        raise CheckpointError(
            f"adapter {adapter.path} was made for the DiT {adapter.base} (sha256 "
            f"{adapter.base_sha256[:12]}...), not for {base} (sha256 {base_sha256[:12]}...); "
            "use it with the model it was trained on")


def merge_adapters(
    model: nn.Module, adapters: Iterable[tuple[Adapter, float]]
) -> nn.Module:
    """Merge adapters at their scales into ``model``'s weights and remove the LoRA layers.

    The merged model is the plain DiT again: restoring with it costs nothing extra.
    """
    names = []
    for i, (adapter, scale) in enumerate(adapters):
        name = f"lora{i}"
        load_adapter(model, adapter, name)
        for module in model.modules():
            if isinstance(module, peft().tuners.lora.LoraLayer):
                module.set_scale(name, scale)  # alpha / r times ``scale``
        names.append(name)
    if not names:
        return model
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, peft().tuners.lora.LoraLayer):
                child.merge(adapter_names=names)
                setattr(parent, child_name, child.get_base_layer())
    del model.peft_config
    return model
