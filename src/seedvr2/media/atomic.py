"""Write outputs under a temporary name next to the target and rename them on success.

A crash or exception leaves the previous file (if any) untouched and no half-written file
behind; the rename is atomic because the temporary lives in the destination folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from seedvr2.errors import OutputError


def _exists(path: Path, folder: bool) -> bool:
    """An existing target; an empty folder does not count for folder targets."""
    if folder and path.is_dir():
        return any(path.iterdir())
    return path.exists()


def _create_temp(path: Path, folder: bool, suffix: str = ".partial") -> Path:
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


class AtomicOutput:
    """A temporary file or folder (:attr:`temp`) that becomes ``path`` on :meth:`commit`.

    Args:
        path: the final output.
        folder: the output is a folder (image sequence) rather than a file.
        overwrite: replace an existing ``path``; otherwise refuse with OutputError. An existing
            folder is replaced as a whole (an empty one needs no ``overwrite``).

    Raises:
        OutputError: ``path`` exists without ``overwrite``, or its folder cannot be created or
            written.
    """

    def __init__(self, path: Path, *, folder: bool, overwrite: bool):
        self.path = path
        self._folder = folder
        self._overwrite = overwrite
        self._check_target()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.temp = _create_temp(path, folder)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise OutputError(f"{path}: cannot write to folder {path.parent} ({reason})") from None

    def _check_target(self) -> None:
        path = self.path
        if path.exists() and path.is_dir() != self._folder:
            kind = "a folder" if path.is_dir() else "a file"
            raise OutputError(f"{path}: is {kind}; choose another output path")
        if _exists(path, self._folder) and not self._overwrite:
            raise OutputError(
                f"{path}: already exists; pass --overwrite (overwrite=True) to replace it"
            )

    def commit(self) -> None:
        """Move the finished temporary onto ``path`` (replacing the old one if allowed)."""
        try:
            self._check_target()
        except OutputError:
            self.discard()
            raise
        if self._folder and self.path.is_dir():  # swap, then remove the old folder
            old = _create_temp(self.path, folder=True, suffix=".old")
            os.replace(self.path, old / self.path.name)
            os.replace(self.temp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.temp, self.path)

    def discard(self) -> None:
        """Delete the temporary."""
        if self._folder:
            shutil.rmtree(self.temp, ignore_errors=True)
        else:
            self.temp.unlink(missing_ok=True)
