"""``seedvr2 convert``: re-save a weights file in fp16, bf16 or (scaled) fp8 safetensors.

fp8 files follow the mixed convention of the community SeedVR2 files: the matrices of the
transformer blocks (``blocks.*`` with 2+ dimensions, nearly all the parameters) become fp8, while
norms, biases, modulation, the input/output projections and the time embedding stay bf16, being
few and the most sensitive. ``scaled`` stores one float32 scale per fp8 tensor as
``<module>.scale_<param>`` (``value = fp8 · scale``, amax mapped on the fp8 maximum), which
:func:`.formats.load_state_dict_file` applies on load. RoPE frequency buffers keep their dtype.
The output is written atomically (:func:`.writing.write_atomically`, the umask's permissions),
keeps the source's ``config`` metadata, and gets a ``sha256sum``-style manifest ``OUT.sha256``
beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from seedvr2.errors import CheckpointError, OutputError

from .digests import sha256_of
from .formats import FP8_DTYPES, load_state_dict_file, scale_key
from .loading import BUFFER_SUFFIXES
from .networks import file_config
from .writing import save_safetensors, write_atomically

TARGETS = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
MIXED_DTYPE = torch.bfloat16  # tensors an fp8 file keeps in higher precision


@dataclass(frozen=True)
class Converted:
    """What :func:`convert_weights` wrote."""

    path: Path
    manifest: Path  # OUT.sha256
    sha256: str
    size: int  # bytes
    tensors: int
    fp8_tensors: int

    def __str__(self) -> str:
        fp8 = f", {self.fp8_tensors} of {self.tensors} tensors in fp8" if self.fp8_tensors else ""
        return f"{self.path} ({self.size / 2**20:.1f} MiB{fp8}); sha256 in {self.manifest}"


def is_fp8_candidate(name: str, tensor: torch.Tensor) -> bool:
    """Whether the mixed fp8 convention stores ``name`` in fp8: a block's matrix."""
    return name.startswith("blocks.") and tensor.ndim >= 2 and tensor.is_floating_point()


def _fp8(name: str, tensor: torch.Tensor, dtype: torch.dtype, scaled: bool) -> dict:
    """``{name: fp8}`` (plus ``{scale_name: scale}`` when scaled)."""
    value = tensor.float()
    limit = torch.finfo(dtype).max
    amax = float(value.abs().max()) if value.numel() else 0.0
    if not scaled:
        if amax > limit:
            raise CheckpointError(
                f"{name} reaches {amax:g}, beyond the {limit:g} of {dtype}; convert with --scaled"
            )
        return {name: value.to(dtype)}
    scale = torch.tensor(amax / limit if amax > 0 else 1.0, dtype=torch.float32)
    return {name: (value / scale).to(dtype), scale_key(name): scale}


def _cast(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not tensor.is_floating_point() or name.endswith(BUFFER_SUFFIXES):
        return tensor.contiguous()
    out = tensor.to(dtype).contiguous()
    if not bool(out.isfinite().all()) and bool(tensor.isfinite().all()):
        raise CheckpointError(f"{name} overflows {dtype}; convert to bf16 instead")
    return out


def converted_state(
    state: dict[str, torch.Tensor], target: str, scaled: bool = False
) -> dict[str, torch.Tensor]:
    """``state`` in the ``target`` dtype (see the module doc for the fp8 convention)."""
    dtype = TARGETS[target]
    fp8 = dtype.itemsize == 1
    if scaled and not fp8:
        raise CheckpointError(f"--scaled applies to fp8 targets, not {target}")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if fp8 and is_fp8_candidate(name, tensor):
            out.update(_fp8(name, tensor, dtype, scaled))
        else:
            out[name] = _cast(name, tensor, MIXED_DTYPE if fp8 else dtype)
    return out


def convert_weights(
    source: str | Path,
    output: str | Path,
    target: str,
    scaled: bool = False,
    overwrite: bool = False,
) -> Converted:
    """Write ``source`` (any readable weights file) as ``target`` safetensors at ``output``.

    Raises:
        CheckpointError: unreadable source, unknown target, a value fp16 or plain fp8 cannot hold.
        OutputError: ``output`` (or its manifest) exists without ``overwrite``, is the source,
            is not ``.safetensors``, or its folder does not exist.
    """
    source, output = Path(source), Path(output)
    manifest = output.with_name(output.name + ".sha256")
    if target not in TARGETS:
        raise CheckpointError(f"--dtype {target!r} is not one of {', '.join(TARGETS)}")
    if output.suffix != ".safetensors":
        raise OutputError(f"{output}: the converted file must end in .safetensors")
    if output.exists() and output.resolve() == source.resolve():
        raise OutputError(f"{output} is the source file; write the conversion elsewhere")
    if not overwrite and (output.exists() or manifest.exists()):
        existing = output if output.exists() else manifest
        raise OutputError(f"{existing} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise OutputError(f"folder {output.parent} does not exist")
    loaded = load_state_dict_file(source)
    state = converted_state(loaded, target, scaled)
    metadata = {"format": "pt"}
    config = file_config(source)
    if config is not None:
        metadata["config"] = json.dumps(config)
    write_atomically(output, lambda temp: save_safetensors(state, temp, metadata))
    digest = sha256_of(output)
    write_atomically(manifest, lambda temp: temp.write_text(f"{digest}  {output.name}\n"))
    return Converted(
        output,
        manifest,
        digest,
        output.stat().st_size,
        len(loaded),
        sum(t.dtype in FP8_DTYPES for t in state.values()),
    )
