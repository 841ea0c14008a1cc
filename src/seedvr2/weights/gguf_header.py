"""Bounded parsing of a GGUF header: the key/value metadata and the tensor table.

A GGUF file states its own counts and lengths (strings, arrays, keys, tensors, dimensions), so a
hostile or broken file can claim 2^40 array items in 49 bytes. Every count is checked against the
bytes left in the file *before* anything is read or allocated, every tensor's data must lie inside
the file, and any violation raises :class:`MalformedGGUF` saying what is wrong and where. Layout
(little-endian, versions 2 and 3): magic ``GGUF``, version u32, tensor count u64, key/value count
u64, the key/values, the tensor infos (name, n_dims u32, dims u64 innermost first, type u32,
offset u64), then the tensor data from the next multiple of ``general.alignment`` (default 32).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod

import numpy as np

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NESTING = 4  # arrays of arrays; deeper means a broken or hostile file
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_SCALARS = {  # value type id -> struct format (little-endian)
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
    12: "<d",
}  # fmt: skip
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, the smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset


class MalformedGGUF(ValueError):
    """The file breaks the GGUF layout; the message says what and where."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the table."""

    name: str
    dims: tuple[int, ...]  # GGUF order: innermost (ne0) first
    type_id: int  # a GGMLQuantizationType value
    start: int  # absolute byte offset of the data in the file
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    fields: dict[str, object]  # key -> int, float, bool, str or (nested) list
    tensors: dict[str, TensorInfo]


class _Cursor:
    """Reads little-endian values from ``data``, refusing any read past its end."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.pos, self.size = data, 0, len(data)

    def need(self, count: int, item_bytes: int, what: str) -> None:
        if count * item_bytes > self.size - self.pos:
            raise MalformedGGUF(
                f"{what} ({count:,} x {item_bytes} bytes at byte {self.pos}) runs past the end "
                f"of the file ({self.size:,} bytes)"
            )

    def scalar(self, fmt: str, what: str):
        self.need(1, struct.calcsize(fmt), what)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self, what: str) -> str:
        length = self.scalar("<Q", f"length of {what}")
        self.need(length, 1, what)
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedGGUF(f"{what} at byte {self.pos - length} is not UTF-8") from None

    def value(self, type_id: int, what: str, depth: int = 0) -> object:
        if type_id in _SCALARS:
            return self.scalar(_SCALARS[type_id], what)
        if type_id == _STRING:
            return self.string(what)
        if type_id != _ARRAY:
            raise MalformedGGUF(f"{what} has unknown value type {type_id}")
        if depth >= MAX_NESTING:
            raise MalformedGGUF(f"{what} nests arrays deeper than {MAX_NESTING} levels")
        item_type = self.scalar("<I", f"item type of {what}")
        count = self.scalar("<Q", f"item count of {what}")
        if item_type in _SCALARS:
            fmt = _SCALARS[item_type]
            self.need(count, struct.calcsize(fmt), f"{what} items")
            items = np.frombuffer(self.data, np.dtype(fmt), count, self.pos).tolist()
            self.pos += count * struct.calcsize(fmt)
            return items
        self.need(count, 8 if item_type == _STRING else 12, f"{what} items")  # smallest item
        return [self.value(item_type, f"{what}[{i}]", depth + 1) for i in range(count)]


def _tensor_info(cursor: _Cursor, index: int, sizes: Mapping[int, tuple[int, int]]) -> tuple:
    """(name, dims, type id, relative offset, bytes) of the ``index``-th tensor entry."""
    name = cursor.string(f"name of tensor {index}")
    n_dims = cursor.scalar("<I", f"dimension count of {name}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise MalformedGGUF(f"tensor {name} claims {n_dims} dimensions (GGUF allows 1 to 4)")
    cursor.need(n_dims, 8, f"dimensions of {name}")
    dims = tuple(cursor.scalar("<Q", f"dimensions of {name}") for _ in range(n_dims))
    type_id = cursor.scalar("<I", f"type of {name}")
    if type_id not in sizes:
        raise MalformedGGUF(f"tensor {name} has unknown GGML type id {type_id}")
    offset = cursor.scalar("<Q", f"data offset of {name}")
    block, type_bytes = sizes[type_id]
    if dims[0] % block:
        raise MalformedGGUF(
            f"tensor {name}: its rows of {dims[0]} values are not whole blocks of {block}"
        )
    return name, dims, type_id, offset, prod(dims) // block * type_bytes


def _alignment(fields: Mapping[str, object], types: Mapping[str, int]) -> int:
    if "general.alignment" not in fields:
        return DEFAULT_ALIGNMENT
    value = fields["general.alignment"]
    if types["general.alignment"] != _UINT32 or value <= 0 or value & (value - 1):
        raise MalformedGGUF(f"general.alignment {value!r} is not a positive power of two (u32)")
    return value


def read_header(data: memoryview, sizes: Mapping[int, tuple[int, int]]) -> GGUFHeader:
    """Parse and bound-check the header of GGUF bytes ``data``.

    ``sizes`` maps each known GGML type id to ``(values per block, bytes per block)``
    (``gguf.GGML_QUANT_SIZES``). Raises :class:`MalformedGGUF`.
    """
    cursor = _Cursor(data)
    cursor.need(1, 4 + 4 + 8 + 8, "the GGUF preamble")
    if bytes(data[:4]) != MAGIC:
        raise MalformedGGUF(f"it starts with {bytes(data[:4])!r}, not the GGUF magic {MAGIC!r}")
    cursor.pos = 4
    version = cursor.scalar("<I", "version")
    if version not in VERSIONS:
        endian = " (big-endian files are not supported)" if version >> 24 in VERSIONS else ""
        raise MalformedGGUF(f"GGUF version {version} is not supported (2 or 3){endian}")
    tensor_count = cursor.scalar("<Q", "tensor count")
    kv_count = cursor.scalar("<Q", "key/value count")
    cursor.need(kv_count, _MIN_KV_BYTES, "the key/value table")
    cursor.need(tensor_count, _MIN_TENSOR_INFO_BYTES, "the tensor table")
    fields: dict[str, object] = {}
    types: dict[str, int] = {}
    for index in range(kv_count):
        key = cursor.string(f"key {index}")
        if key in fields:
            raise MalformedGGUF(f"key {key} is listed twice")
        types[key] = cursor.scalar("<I", f"value type of {key}")
        fields[key] = cursor.value(types[key], key)
    infos = [_tensor_info(cursor, i, sizes) for i in range(tensor_count)]
    alignment = _alignment(fields, types)
    data_start = -(-cursor.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, dims, type_id, offset, nbytes in infos:
        if name in tensors:
            raise MalformedGGUF(f"tensor {name} is listed twice")
        if data_start + offset + nbytes > len(data):
            raise MalformedGGUF(
                f"the data of tensor {name} ({nbytes:,} bytes at byte {data_start + offset:,}) "
                f"runs past the end of the file ({len(data):,} bytes; truncated?)"
            )
        tensors[name] = TensorInfo(name, dims, type_id, data_start + offset, nbytes)
    return GGUFHeader(fields, tensors)
