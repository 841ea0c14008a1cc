"""Reading weights files: ``.safetensors``, pickled ``.pth/.pt/.bin`` and ``.gguf``; dequantisation.

Pickles are read with ``torch.load(weights_only=True)``: plain tensors and containers only, never
arbitrary Python objects; zip-format files are memory-mapped. Common training wrappers
(``{"ema": state_dict}``) are unwrapped by explicit keys only.

fp8 (``float8_e4m3fn``, ``float8_e5m2``) is dequantised on load. A tensor ``<module>.<param>`` may
come with a per-tensor scale ``<module>.scale_<param>`` (ComfyUI's "scaled fp8" convention, e.g.
``blocks.0.attn.proj_qkv.vid.scale_weight``): the value is ``fp8 * scale``, and the scale entry is
consumed. Plain fp8 without a scale is accepted too (scale 1). GGUF files are read through the
optional ``gguf`` package (:mod:`.gguf_files`), their quantised tensors dequantised to float32.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from seedvr2.errors import CheckpointError

from .gguf_files import GGUFFile

PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
SUFFIXES = (".safetensors", ".gguf", *PICKLE_SUFFIXES)
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
SAFETENSORS_DTYPES = {  # the header's dtype codes
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}  # fmt: skip
# Keys under which training checkpoints nest the state dict; unwrapped only when exactly one is set.
CONTAINER_KEYS = ("state_dict", "model", "ema", "module")

Device = torch.device | str


def checked_path(path: str | Path) -> Path:
    """``path`` as a Path, if it is an existing file with a supported suffix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix not in SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported weights format {path.suffix!r}; use one of {', '.join(SUFFIXES)}"
        )
    return path


def load_pickle(path: Path) -> object:
    """``torch.load`` restricted to tensors and containers (memory-mapped for zip-format files)."""
    try:
        return torch.load(
            path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if refused:
            raise CheckpointError(
                f"{path} holds a Python object ({refused.group(1)}) besides tensors; pickles like "
                "that can run code and are refused (weights_only loading); re-save the state dict "
                "alone, or as safetensors"
            ) from err
        raise CheckpointError(f"{path} is not a readable PyTorch file (corrupt?)") from err
    except Exception as err:  # truncated or corrupt archives surface as many exception types
        raise CheckpointError(f"{path} is not a readable PyTorch file (corrupt?): {err}") from err


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``obj``, descending through :data:`CONTAINER_KEYS`."""
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = [key for key in CONTAINER_KEYS if isinstance(obj.get(key), dict)]
        if len(found) > 1:
            raise CheckpointError(
                f"{path} nests several state dicts ({', '.join(found)}); save the one to use alone"
            )
        if not found:
            others = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise CheckpointError(
                f"{path} is not a state dict: entries {others[:10]} are not tensors and none of "
                f"{', '.join(CONTAINER_KEYS)} holds one; save the state dict alone"
            )
        obj = obj[found[0]]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def scale_key(name: str) -> str:
    """Name of the per-tensor fp8 scale of ``name``: ``a.b.weight`` -> ``a.b.scale_weight``."""
    module, _, param = name.rpartition(".")
    return f"{module}.scale_{param}" if module else f"scale_{param}"


def _convert(
    names: Iterable[str],
    get: Callable[[str], torch.Tensor],
    dtype: torch.dtype | None,
    device: Device,
    path: Path,
) -> dict[str, torch.Tensor]:
    """Fetch each tensor, dequantise fp8 (consuming scales), cast floats to ``dtype``, move."""
    names = list(names)
    present, consumed, out = set(names), set(), {}
    for name in names:
        tensor = get(name)
        if tensor.dtype in FP8_DTYPES:
            tensor = tensor.float()  # exact: fp8 values are float32 values
            scale = scale_key(name)
            if scale in present:
                factor = get(scale)
                if factor.numel() != 1:
                    raise CheckpointError(
                        f"{path}: fp8 scale {scale} has shape {tuple(factor.shape)}; only one "
                        "scale per tensor is supported"
                    )
                tensor = tensor * factor.float()
                consumed.add(scale)
        if tensor.is_floating_point():
            tensor = tensor.to(device=device, dtype=dtype or tensor.dtype)
        else:
            tensor = tensor.to(device=device)
        out[name] = tensor
    for scale in consumed:
        del out[scale]
    return out


def _meta(shape: Iterable[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def _safetensors_dtype(name: str, code: str, path: Path) -> torch.dtype:
    if code not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: tensor {name} has dtype {code}, which is not supported")
    return SAFETENSORS_DTYPES[code]


def _read(path: str | Path, dtype: torch.dtype | None, device: Device, header: bool) -> dict:
    """The tensors of a weights file, or with ``header`` meta tensors read from its header."""
    path = checked_path(path)
    if path.suffix == ".gguf":
        gguf = GGUFFile(path)
        get = (lambda n: _meta(gguf.shape(n), gguf.dtype(n))) if header else gguf.get_tensor
        return _convert(gguf.keys(), get, dtype, device, path)
    if path.suffix in PICKLE_SUFFIXES:  # no header: memory-mapped (zip format) instead
        state = _unwrap_state_dict(load_pickle(path), path)
        get = (lambda n: state[n].to("meta")) if header else state.__getitem__
        return _convert(state, get, dtype, device, path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:

            def described(name: str) -> torch.Tensor:
                view = f.get_slice(name)
                return _meta(view.get_shape(), _safetensors_dtype(name, view.get_dtype(), path))

            return _convert(f.keys(), described if header else f.get_tensor, dtype, device, path)
    except SafetensorError as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated?): {err}"
        ) from err


def tensor_header(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a weights file as a ``meta`` tensor: names, shapes and loaded dtypes.

    No tensor data is read from safetensors and GGUF files (only their headers), so a file can be
    checked against a network before it is loaded. fp8 scales are consumed as on loading.
    """
    return _read(path, None, "meta", header=True)


def load_state_dict_file(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: Device = "cpu",
) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, by name.

    Args:
        path: a ``.safetensors``, ``.gguf``, ``.pth``, ``.pt`` or ``.bin`` file.
        dtype: cast floating tensors to this dtype; ``None`` keeps the file's dtype, except fp8
            and GGUF quantisations, which become float32. Integer and bool tensors are never cast.
        device: where the tensors go. Files are read to the CPU first (mapped, not copied, when
            the dtype and device already match).

    Raises:
        CheckpointError: missing file, unsupported suffix, corrupt or truncated file, a pickle
            holding non-tensor objects, no recognisable state dict, or GGUF without ``gguf``.
    """
    return _read(path, dtype, device, header=False)
