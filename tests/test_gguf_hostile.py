"""Malformed and hostile GGUF files fail fast with a CheckpointError naming the file and the fault.

The files are built byte by byte (little-endian GGUF v3): preamble, key/values, tensor infos,
alignment padding, data. Each must be refused well under a second, allocating nothing large.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
import torch

from seedvr2.errors import CheckpointError
from seedvr2.weights import load_state_dict_file
from seedvr2.weights.gguf_files import ORIG_SHAPE_KEY, GGUFFile, save_gguf

pytest.importorskip("gguf")

HUGE = 1 << 40
U32, STRING, ARRAY, F32 = 4, 8, 9, 0  # value types; F32 is also GGML type 0


def text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, type_id: int, payload: bytes) -> bytes:
    return text(key) + struct.pack("<I", type_id) + payload


def tensor(name: str, dims: tuple[int, ...], type_id: int = F32, offset: int = 0) -> bytes:
    head = text(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
    return head + struct.pack("<IQ", type_id, offset)


def gguf(kvs: list[bytes] = (), tensors: list[bytes] = (), data: bytes = b"",
         counts: tuple[int, int] | None = None, magic: bytes = b"GGUF", version: int = 3) -> bytes:
    n_tensors, n_kvs = counts or (len(tensors), len(kvs))
    body = magic + struct.pack("<IQQ", version, n_tensors, n_kvs) + b"".join(kvs)
    body += b"".join(tensors)
    return body + b"\0" * (-len(body) % 32) + data


FOUR_FLOATS = tensor("w", (4,))
VALID = gguf([kv("general.architecture", STRING, text("seedvr2"))], [FOUR_FLOATS], b"\0" * 16)

MALFORMED = {
    # 49 bytes claiming 2^40 strings: the reader used to loop until memory ran out
    "array_of_2^40_strings": (
        gguf([kv("a", ARRAY, struct.pack("<IQ", STRING, HUGE))]), "items .* runs past the end"),
    "array_of_2^40_u32": (
        gguf([kv("a", ARRAY, struct.pack("<IQ", U32, HUGE))]), "items .* runs past the end"),
    "huge_string": (gguf([kv("a", STRING, struct.pack("<Q", HUGE))]), "runs past the end"),
    "huge_key": (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, HUGE) + b"\0" * 8, "key 0 .* runs past"),
    "huge_kv_count": (gguf(counts=(0, HUGE)), "key/value table .* runs past the end"),
    "huge_tensor_count": (gguf(counts=(HUGE, 0)), "tensor table .* runs past the end"),
    "empty": (b"", "preamble .* runs past the end"),
    "wrong_magic": (b"GGML" + VALID[4:], "not the GGUF magic"),
    "version_1": (gguf(version=1), "version 1 is not supported"),
    "big_endian": (gguf(version=3 << 24), "big-endian"),
    "unknown_value_type": (gguf([kv("a", 99, b"\0" * 8)]), "unknown value type 99"),
    "unknown_tensor_type": (gguf([], [tensor("w", (4,), type_id=999)], b"\0" * 16),
                            "unknown GGML type id 999"),
    "five_dimensions": (gguf([], [tensor("w", (1, 1, 1, 1, 1))], b"\0" * 4), "5 dimensions"),
    "data_past_end": (gguf([], [tensor("w", (4,), offset=HUGE)], b"\0" * 16),
                      "data of tensor w .* runs past the end"),
    "huge_dims": (gguf([], [tensor("w", (HUGE, HUGE))], b"\0" * 16),
                  "data of tensor w .* runs past the end"),
    "truncated_data": (VALID[:-4], "data of tensor w .* runs past the end"),
    "truncated_header": (VALID[:40], "runs past the end"),
    "partial_block": (gguf([], [tensor("w", (33,), type_id=8)], b"\0" * 64),  # Q8_0: blocks of 32
                      "not whole blocks of 32"),
    "duplicate_tensor": (gguf([], [FOUR_FLOATS, FOUR_FLOATS], b"\0" * 16), "w is listed twice"),
    "duplicate_key": (gguf([kv("a", U32, b"\0" * 4)] * 2), "a is listed twice"),
    "bad_alignment": (gguf([kv("general.alignment", U32, struct.pack("<I", 3))]),
                      "alignment 3 is not a positive power of two"),
    "deep_nesting": (gguf([kv("a", ARRAY, struct.pack("<IQ", ARRAY, 1) * 6 + b"\0" * 12)]),
                     "deeper than 4"),
    "bad_utf8": (gguf([kv("a", STRING, struct.pack("<Q", 2) + b"\xff\xfe")]), "not UTF-8"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_gguf_fails_fast_and_cleanly(tmp_path: Path, name: str) -> None:
    content, fault = MALFORMED[name]
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(content)
    began = time.perf_counter()
    with pytest.raises(CheckpointError, match=fault) as error:
        load_state_dict_file(path)
    assert time.perf_counter() - began < 0.5
    assert str(error.value).startswith(f"{path} is not a readable GGUF file")
    assert "\n" not in str(error.value)


def test_hand_made_valid_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.gguf"
    path.write_bytes(VALID)
    assert torch.equal(load_state_dict_file(path)["w"], torch.zeros(4))
    assert GGUFFile(path).metadata() == {"general.architecture": "seedvr2"}


def test_orig_shape_that_does_not_fit_the_tensor(tmp_path: Path) -> None:
    state = {"conv.weight": torch.zeros(2, 3, 4, 5, 6)}
    path = save_gguf(state, tmp_path / "w.gguf", "F32")
    content = path.read_bytes()
    good = struct.pack("<5i", 2, 3, 4, 5, 6)  # the gguf writer stores Python ints as int32
    assert content.count(good) == 1
    path.write_bytes(content.replace(good, struct.pack("<5i", 2, 3, 4, 5, 7)))
    with pytest.raises(CheckpointError, match=ORIG_SHAPE_KEY + r"conv.weight .* not a shape"):
        load_state_dict_file(path)
