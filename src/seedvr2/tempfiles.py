"""Temporaries beside an output: the first half of every write-then-rename in seedvr2."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def reserve_temp(path: Path, folder: bool = False, suffix: str = ".partial") -> Path:
    """A new hidden file or folder next to ``path``, with the usual (umask) permissions.

    The name keeps ``path``'s extension so FFmpeg picks the same container.
    """
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}{path.suffix}")
        try:
            if folder:
                temp.mkdir()
            else:
                os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"no free temporary name next to {path}")
