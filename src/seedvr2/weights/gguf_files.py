"""GGUF weights (llama.cpp's format, used by the community SeedVR2 quantisations).

The header is parsed here (:mod:`.gguf_header`, every count bounded by the file size); the
optional ``gguf`` package (``pip install "seedvr2[gguf]"``) dequantises and writes.
Tensor names are those of the released checkpoints. GGUF lists a tensor's dimensions innermost
first (``ne0`` = columns), so a torch ``(out, in)`` weight is stored as ``[in, out]``; shapes are
reversed on read. GGUF holds at most 4 dimensions: a larger tensor (a Conv3d kernel) is stored
flattened with its shape under ``comfy.gguf.orig_shape.<name>`` (the ComfyUI-GGUF convention).
Quantised tensors (Q8_0, Q4_K, ...) are dequantised to float32; F16, BF16 and F32 keep their dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from seedvr2.errors import CheckpointError

from .gguf_header import MAX_DIMS, MalformedGGUF, read_header

ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."
ARCHITECTURE = "seedvr2"
CONFIG_KEY = "seedvr2.config"  # the network's JSON config, as safetensors metadata "config"
_PLAIN_TYPES = {  # GGML types read as they are (not dequantised) -> torch dtype
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
}  # fmt: skip


def _gguf() -> ModuleType:
    try:
        import gguf
    except ImportError:
        raise CheckpointError(
            'GGUF files need the gguf package: pip install "seedvr2[gguf]"'
        ) from None
    return gguf


class GGUFFile:
    """The tensors and string metadata of a GGUF file (memory-mapped, read on demand).

    The header is parsed by :func:`.gguf_header.read_header`, which bounds every count by the
    file size; any malformation is a :class:`CheckpointError` naming the file.
    """

    def __init__(self, path: Path) -> None:
        gguf = _gguf()
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            self._data = np.memmap(self.path, np.uint8, "r") if size else np.empty(0, np.uint8)
            sizes = {int(kind): size for kind, size in gguf.GGML_QUANT_SIZES.items()}
            self._header = read_header(memoryview(self._data), sizes)
        except (MalformedGGUF, OSError) as error:
            raise CheckpointError(f"{path} is not a readable GGUF file: {error}") from None
        self._types = gguf.GGMLQuantizationType
        self._dequantize = gguf.quants.dequantize

    def keys(self) -> list[str]:
        return list(self._header.tensors)

    def metadata(self) -> dict[str, str]:
        """String-valued fields (``general.architecture``, ``seedvr2.config``, ...)."""
        return {k: v for k, v in self._header.fields.items() if isinstance(v, str)}

    def shape(self, name: str) -> tuple[int, ...]:
        """Torch shape of tensor ``name`` (from the header; no data is read)."""
        info = self._header.tensors[name]
        stored = self._header.fields.get(ORIG_SHAPE_KEY + name)
        if stored is None:
            return tuple(reversed(info.dims))
        if not (
            isinstance(stored, list)
            and all(isinstance(n, int) and n >= 0 for n in stored)
            and prod(stored) == prod(info.dims)
        ):
            raise CheckpointError(
                f"{self.path}: {ORIG_SHAPE_KEY}{name} = {str(stored)[:80]} is not a shape of "
                f"the tensor's {prod(info.dims):,} values"
            )
        return tuple(stored)

    def dtype(self, name: str) -> torch.dtype:
        """The dtype :meth:`get_tensor` returns for ``name`` (quantised types: float32)."""
        kind = self._types(self._header.tensors[name].type_id)
        return _PLAIN_TYPES.get(kind.name, torch.float32)

    def get_tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` in torch layout; quantised types dequantised to float32."""
        info = self._header.tensors[name]
        kind = self._types(info.type_id)
        raw = np.array(self._data[info.start : info.start + info.nbytes])  # a copy off the map
        if kind.name in _PLAIN_TYPES:
            out = torch.from_numpy(raw).view(_PLAIN_TYPES[kind.name])  # (nbytes,) -> (values,)
        else:
            block, type_bytes = _gguf().GGML_QUANT_SIZES[kind]
            rows = raw.reshape(-1, info.dims[0] // block * type_bytes)  # (rows, row bytes)
            try:
                out = torch.from_numpy(self._dequantize(rows, kind))
            except NotImplementedError:
                raise CheckpointError(
                    f"{self.path}: tensor {name} has GGUF type {kind.name}, which the gguf package "
                    "cannot dequantise; re-quantise it as Q8_0, Q4_K, F16 or BF16"
                ) from None
        return out.reshape(self.shape(name))


def quantize_q4_k(array: np.ndarray) -> np.ndarray:  # (..., n·256) float32 -> (..., n·144) uint8
    """Q4_K blocks by plain min/max fitting (llama.cpp adds a search for slightly lower error).

    A 256-value super-block holds 8 sub-blocks of 32: ``x ≈ d·sc·q - dmin·m`` with 4-bit ``q``,
    6-bit ``sc`` and ``m`` per sub-block, float16 ``d`` and ``dmin`` per super-block.
    """
    blocks = array.reshape(-1, 8, 32).astype(np.float32)  # (n, 8, 32)
    low = np.minimum(blocks.min(-1), 0.0)  # (n, 8)
    step, offset = (blocks.max(-1) - low) / 15, -low  # per sub-block scale and min, (n, 8)
    d = (step.max(-1, keepdims=True) / 63).astype(np.float16)  # (n, 1)
    dmin = (offset.max(-1, keepdims=True) / 63).astype(np.float16)

    def six_bits(value: np.ndarray, unit: np.ndarray) -> np.ndarray:
        unit = unit.astype(np.float32)
        return np.clip(np.round(value / np.where(unit > 0, unit, 1)), 0, 63).astype(np.uint8)

    sc, m = six_bits(step, d), six_bits(offset, dmin)  # (n, 8)
    scale = (d.astype(np.float32) * sc)[..., None]  # (n, 8, 1)
    shift = (dmin.astype(np.float32) * m)[..., None]
    q = np.clip(np.round((blocks + shift) / np.where(scale > 0, scale, 1)), 0, 15).astype(np.uint8)
    scales = np.concatenate(  # 12 bytes: the layout gguf.quants.Q4_K.get_scale_min unpacks
        [sc[:, :4] | (sc[:, 4:] >> 4 << 6), m[:, :4] | (m[:, 4:] >> 4 << 6),
         (sc[:, 4:] & 0x0F) | (m[:, 4:] << 4)], axis=1,
    )  # fmt: skip
    pairs = q.reshape(-1, 4, 2, 32)  # sub-blocks 2i (low nibble) and 2i+1 (high nibble)
    nibbles = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128)
    packed = np.concatenate([d.view(np.uint8), dmin.view(np.uint8), scales, nibbles], axis=1)
    return packed.reshape(*array.shape[:-1], array.shape[-1] // 256 * 144)


def save_gguf(
    state: Mapping[str, torch.Tensor],
    path: str | Path,
    quantization: str = "Q8_0",
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state`` as GGUF, matrices in ``quantization`` (F16, BF16, Q8_0, Q4_K, ...).

    Tensors with fewer than 2 dimensions (norms, biases, modulation) or rows that are not a
    multiple of the quantisation block stay float32, as the community files keep them.
    """
    gguf = _gguf()
    kind = getattr(gguf.GGMLQuantizationType, quantization, None)
    if kind is None:
        raise CheckpointError(f"unknown GGUF type {quantization!r}; use e.g. Q8_0, F16 or BF16")
    block, _ = gguf.GGML_QUANT_SIZES[kind]
    writer = gguf.GGUFWriter(str(path), ARCHITECTURE)
    for key, value in (metadata or {}).items():
        writer.add_string(key, value)
    for name, tensor in state.items():
        array = tensor.detach().cpu()
        array = (array.float() if array.is_floating_point() else array).numpy()
        if array.ndim > MAX_DIMS:
            writer.add_array(ORIG_SHAPE_KEY + name, list(array.shape))
            array = array.reshape(array.shape[0], -1)
        if array.dtype == np.float32 and array.ndim >= 2 and array.shape[-1] % block == 0:
            quantize = quantize_q4_k if quantization == "Q4_K" else (
                lambda a: gguf.quants.quantize(a, kind)
            )  # the gguf package has no Q4_K quantiser
            writer.add_tensor(name, quantize(array), raw_dtype=kind)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
