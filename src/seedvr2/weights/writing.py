"""Writing a weights output atomically: into a temporary beside it, renamed onto it when complete.

A crash or an exception leaves the previous file (if any) untouched and no half-written file under
the final name. The finished file has the permissions of any newly created file (``0o666`` less
the umask), whatever the writer did: safetensors writes through a private (``0o600``) temporary
of its own. Checking whether ``path`` may be replaced is the caller's part.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from seedvr2.errors import OutputError
from seedvr2.tempfiles import reserve_temp


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temp)`` to (over)write a temporary file beside ``path``, give it the umask's
    permissions and rename it onto ``path`` (replacing any file there); returns ``path``.

    Raises:
        OutputError: the folder of ``path`` cannot be written (missing, read-only, full disk).
    """
    path = Path(path)
    try:
        temp = reserve_temp(path)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(f"{path}: cannot write to folder {path.parent} ({reason})") from None
    try:
        mode = stat.S_IMODE(os.stat(temp).st_mode)  # 0o666 & ~umask, as the system created it
        write(temp)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(f"{path}: cannot be written ({reason})") from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file``, giving the same bytes for the same tensors and metadata.

    safetensors writes the metadata in its hash map's order, which changes from one call to the
    next: two exports of the same weights differed in bytes, and so in the SHA-256 that a LoRA
    adapter records of its base. The header is rewritten in place with the metadata sorted by
    key; its length, and so every tensor's offset, stays the same.
    """
    save_file(dict(tensors), str(path), metadata=None if metadata is None else dict(metadata))
    if metadata is None or len(metadata) < 2:
        return
    with open(path, "r+b") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > length:  # safetensors' JSON is as compact as Python's
            raise AssertionError(f"sorted safetensors header of {path} grew: {len(text)} > {length}")
        file.seek(8)
        file.write(text.ljust(length))
