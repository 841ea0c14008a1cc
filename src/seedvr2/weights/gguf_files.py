"""GGUF weights (llama.cpp's format, used by the community SeedVR2 quantisations).

Reading and writing go through the optional ``gguf`` package (``pip install "seedvr2[gguf]"``).
Tensor names are those of the released checkpoints. GGUF lists a tensor's dimensions innermost
first (``ne0`` = columns), so a torch ``(out, in)`` weight is stored as ``[in, out]``; shapes are
reversed on read. GGUF holds at most 4 dimensions: a larger tensor (a Conv3d kernel) is stored
flattened with its shape under ``comfy.gguf.orig_shape.<name>`` (the ComfyUI-GGUF convention).
Quantised tensors (Q8_0, Q4_K, ...) are dequantised to float32; F16, BF16 and F32 keep their dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from seedvr2.errors import CheckpointError

ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."
ARCHITECTURE = "seedvr2"
CONFIG_KEY = "seedvr2.config"  # the network's JSON config, as safetensors metadata "config"
_MAX_DIMS = 4


def _gguf() -> ModuleType:
    try:
        import gguf
    except ImportError:
        raise CheckpointError(
            'GGUF files need the gguf package: pip install "seedvr2[gguf]"'
        ) from None
    return gguf


class GGUFFile:
    """The tensors and string metadata of a GGUF file (memory-mapped, read on demand)."""

    def __init__(self, path: Path) -> None:
        gguf = _gguf()
        self.path = path
        try:
            self._reader = gguf.GGUFReader(path, "r")
        except (ValueError, OSError, IndexError) as error:  # bad magic, truncated data
            raise CheckpointError(f"{path} is not a readable GGUF file: {error}") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._types = gguf.GGMLQuantizationType
        self._dequantize = gguf.quants.dequantize

    def keys(self) -> list[str]:
        return list(self._tensors)

    def metadata(self) -> dict[str, str]:
        """String-valued fields (``general.architecture``, ``seedvr2.config``, ...)."""
        strings = {}
        for name, field in self._reader.fields.items():
            value = field.contents()
            if isinstance(value, str):
                strings[name] = value
        return strings

    def _shape(self, name: str) -> tuple[int, ...]:
        stored = self._reader.fields.get(ORIG_SHAPE_KEY + name)
        if stored is not None:
            return tuple(int(n) for n in stored.contents())
        return tuple(int(n) for n in reversed(self._tensors[name].shape))

    def get_tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` in torch layout; quantised types dequantised to float32."""
        tensor = self._tensors[name]
        kind, data = tensor.tensor_type, np.array(tensor.data)  # a copy off the memory map
        if kind == self._types.BF16:
            out = torch.from_numpy(data.view(np.int16)).view(torch.bfloat16)
        elif kind in (self._types.F32, self._types.F16, self._types.F64, self._types.I8,
                      self._types.I16, self._types.I32, self._types.I64):  # fmt: skip
            out = torch.from_numpy(data)
        else:
            try:
                out = torch.from_numpy(self._dequantize(data, kind))
            except NotImplementedError:
                raise CheckpointError(
                    f"{self.path}: tensor {name} has GGUF type {kind.name}, which the gguf package "
                    "cannot dequantise; re-quantise it as Q8_0, Q4_K, F16 or BF16"
                ) from None
        return out.reshape(self._shape(name))


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
        if array.ndim > _MAX_DIMS:
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
