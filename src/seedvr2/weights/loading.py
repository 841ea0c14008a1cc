"""Strict loading of a state dict into a model, and recognising what a checkpoint holds.

``load_into`` has ``load_state_dict(strict=True, assign=True)`` semantics (so models built on the
meta device get the file's tensors), but a mismatch raises :class:`CheckpointError` listing the
missing, unexpected and mis-shaped keys and naming the likely cause: a 7B file for a 3B model, a
VAE file given as the DiT, a key prefix, a different width or depth (spec §1.1, §9).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from seedvr2.errors import CheckpointError

_LISTED = 10  # keys shown per category in an error
BUFFER_SUFFIXES = (".rope.freqs",)  # persistent buffers, not counted as parameters
_BLOCK = re.compile(r"blocks\.(\d+)\.")
_FULL_SIZES = {("3B", 2560, 32): "SeedVR2-3B", ("7B", 3072, 36): "SeedVR2-7B"}


@dataclass(frozen=True)
class CheckpointSummary:
    """What a state dict holds, inferred from its key names and shapes."""

    kind: Literal["dit", "vae", "unknown"]
    parameters: int  # elements of all tensors but known buffers (RoPE frequencies)
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> tensor count
    structure: Literal["3B", "7B"] | None = None  # DiT: SwiGLU + shared blocks / GELU, all mm
    width: int | None = None  # DiT hidden size; VAE first encoder channels
    depth: int | None = None  # DiT blocks; VAE encoder down blocks
    two_stream_depth: int | None = None  # DiT blocks with separate vid/txt weights

    def __str__(self) -> str:
        dtypes = ", ".join(f"{n} {name}" for name, n in self.dtypes.items())
        params = f"{self.parameters:,} parameters ({dtypes})"
        if self.kind == "vae":
            return f"VAE, {self.width} base channels, {self.depth} down blocks, {params}"
        if self.kind == "unknown":
            return f"unknown checkpoint, {params}"
        size = _FULL_SIZES.get((self.structure, self.width, self.depth), "custom size")
        structure = f"{self.structure} structure" if self.structure else "unknown structure"
        return (
            f"DiT, {structure} ({size}), width {self.width}, {self.depth} blocks "
            f"({self.two_stream_depth} two-stream), {params}"
        )


def _dit_width(state: Mapping[str, torch.Tensor]) -> int | None:
    for key in ("vid_in.proj.weight", "txt_in.weight", "vid_out.proj.weight"):
        if key in state and state[key].ndim == 2:
            return state[key].shape[1] if key.startswith("vid_out") else state[key].shape[0]
    return None


def state_dict_summary(state: Mapping[str, torch.Tensor]) -> CheckpointSummary:
    """Recognise a DiT (3B or 7B structure), a VAE, or neither, with size and dtypes."""
    parameters = sum(t.numel() for k, t in state.items() if not k.endswith(BUFFER_SUFFIXES))
    dtypes = dict(Counter(str(t.dtype).removeprefix("torch.") for t in state.values()))
    keys = list(state)
    if keys and all(k.startswith(("encoder.", "decoder.")) for k in keys):
        conv_in = state.get("encoder.conv_in.weight")
        down = {k.split(".")[2] for k in keys if k.startswith("encoder.down_blocks.")}
        return CheckpointSummary(
            "vae",
            parameters,
            dtypes,
            width=None if conv_in is None else conv_in.shape[0],
            depth=len(down) or None,
        )
    blocks = {int(m.group(1)) for k in keys if (m := _BLOCK.match(k)) and ".attn." in k}
    if not blocks and "vid_in.proj.weight" not in state:
        return CheckpointSummary("unknown", parameters, dtypes)
    swiglu = any(".mlp." in k and ".proj_in_gate." in k for k in keys)
    gelu = any(re.search(r"\.mlp\.\w+\.proj_in\.bias$", k) for k in keys)
    structure = "3B" if swiglu and not gelu else "7B" if gelu and not swiglu else None
    return CheckpointSummary(
        "dit",
        parameters,
        dtypes,
        structure,
        width=_dit_width(state),
        depth=max(blocks) + 1 if blocks else 0,
        two_stream_depth=sum(f"blocks.{i}.attn.proj_qkv.vid.weight" in state for i in blocks),
    )


def _key_prefix(file_keys: list[str], model_keys: set[str]) -> str | None:
    """A key prefix (``module.``, ``model.diffusion_model.``) that maps most file keys on ours."""
    for key in file_keys:
        for i, char in enumerate(key):
            if char == "." and key[i + 1 :] in model_keys:
                prefix = key[: i + 1]
                hits = sum(k.startswith(prefix) and k[i + 1 :] in model_keys for k in file_keys)
                if 2 * hits > len(file_keys):
                    return prefix
    return None


def _likely_causes(
    model: CheckpointSummary,
    file: CheckpointSummary,
    prefix: str | None,
) -> list[str]:
    """The table of mismatch diagnoses: (applies, message), all that apply are reported."""
    dits = model.kind == file.kind == "dit"
    same_structure = dits and model.structure == file.structure
    rules = [
        (file.kind == "vae" and model.kind == "dit", "a VAE file was given as the DiT"),
        (file.kind == "dit" and model.kind == "vae", "a DiT file was given as the VAE"),
        (
            dits and None not in (model.structure, file.structure) and not same_structure,
            f"a {file.structure}-structure DiT file ({file.two_stream_depth} of {file.depth} "
            f"blocks two-stream) for a {model.structure}-structure model "
            f"({model.two_stream_depth} of {model.depth}): use the matching model size",
        ),
        (
            same_structure and file.two_stream_depth != model.two_stream_depth,
            f"two-stream blocks: {file.two_stream_depth} in the file, "
            f"{model.two_stream_depth} in the model",
        ),
        (
            dits and file.width != model.width,
            f"width {file.width} in the file, {model.width} in the model",
        ),
        (
            dits and file.depth != model.depth,
            f"{file.depth} blocks in the file, {model.depth} in the model",
        ),
        (prefix is not None, f"the file's keys carry the prefix {prefix!r}; map them first"),
    ]
    return [message for applies, message in rules if applies]


def _listing(title: str, items: list[str]) -> str:
    more = f" ... (+{len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"{title} ({len(items)}): {', '.join(items[:_LISTED])}{more}"


def _mismatch_error(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    mis_shaped: list[str],
) -> CheckpointError:
    prefix = _key_prefix(unexpected, set(missing)) if unexpected and missing else None
    causes = _likely_causes(state_dict_summary(expected), state_dict_summary(state), prefix)
    lines = [
        f"checkpoint does not fit the model: {len(missing)} missing, {len(unexpected)} "
        f"unexpected, {len(mis_shaped)} mis-shaped keys",
        "likely cause: " + ("; ".join(causes) if causes else "unknown"),
    ]
    if missing:
        lines.append(_listing("missing", missing))
    if unexpected:
        lines.append(_listing("unexpected", unexpected))
    if mis_shaped:
        shapes = [
            f"{k} expected {tuple(expected[k].shape)} got {tuple(state[k].shape)}"
            for k in mis_shaped
        ]
        lines.append(_listing("shape mismatches", shapes))
    return CheckpointError("\n".join(lines))


def check_fits(
    expected: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
) -> None:
    """Raise if ``state_dict``'s keys and shapes do not fit a model's ``expected`` state dict.

    Only names and shapes are compared, so ``meta`` tensors (:func:`.formats.tensor_header`)
    check a file before its data is read.

    Raises:
        CheckpointError: keys or shapes differ (missing keys only when ``strict``), with lists
            and the likely cause.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [
        k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if mis_shaped or (strict and (missing or unexpected)):
        raise _mismatch_error(expected, state_dict, missing, unexpected, mis_shaped)


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
) -> tuple[list[str], list[str]]:
    """``model.load_state_dict(state_dict, strict, assign=True)`` with a diagnosing error.

    ``assign=True`` makes the model's tensors the given ones (their dtype and device), so a model
    built on ``torch.device("meta")`` is materialised without a copy. Shape mismatches are always
    errors; with ``strict=False`` missing keys keep their current (possibly meta) tensors.

    Returns:
        ``(missing_keys, unexpected_keys)`` as ``load_state_dict`` does (empty when strict).

    Raises:
        CheckpointError: keys or shapes differ, with lists and the likely cause.
    """
    check_fits(model.state_dict(), state_dict, strict)
    return model.load_state_dict(state_dict, strict=strict, assign=True)
