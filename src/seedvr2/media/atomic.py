"""Write outputs under a temporary name next to the target and rename them on success.

A crash or exception leaves the previous file (if any) untouched and no half-written file
behind; the rename is atomic because the temporary lives in the destination folder. A folder
output carries a manifest of the files written into it; overwriting replaces such a folder only
while it holds nothing else, so a folder of the user's own files is never replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from seedvr2.errors import OutputError
from seedvr2.tempfiles import reserve_temp

MANIFEST = ".seedvr2-output.json"  # in a folder output: the names of the files written


def written_files(folder: Path) -> set[str]:
    """Names of the files this tool wrote into ``folder`` (empty without a readable manifest)."""
    try:
        names = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for name in names if isinstance(name, str)} | {MANIFEST}


def temp_pattern(path: Path) -> re.Pattern[str]:
    """Names of the temporaries of ``path`` (left behind by killed runs)."""
    return re.compile(re.escape(f".{path.name}.") + r"[0-9a-f]{8}\.(partial|old)" + re.escape(path.suffix))


def _exists(path: Path, folder: bool) -> bool:
    """An existing target; an empty folder does not count for folder targets."""
    if folder and path.is_dir():
        return any(path.iterdir())
    return path.exists()


class AtomicOutput:
    """A temporary file or folder (:attr:`temp`) that becomes ``path`` on :meth:`commit`.

    Args:
        path: the final output.
        folder: the output is a folder (image sequence) rather than a file.
        overwrite: replace an existing ``path``; otherwise refuse with OutputError. An existing
            folder is replaced as a whole only when it holds nothing but the files of an earlier
            output (an empty one needs no ``overwrite``).

    Raises:
        OutputError: ``path`` exists without ``overwrite``, is a folder holding other files, or
            its folder cannot be created or written.
    """

    def __init__(self, path: Path, *, folder: bool, overwrite: bool):
        self.path = path
        self._folder = folder
        self._overwrite = overwrite
        self._check_target()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.temp = reserve_temp(path, folder)
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
                f"{path}: already exists; pass --overwrite to replace it"
            )
        if self._folder and path.is_dir():
            ours = written_files(path)
            foreign = sorted(p.name for p in path.iterdir() if p.name not in ours)
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise OutputError(
                    f"{path}: holds files seedvr2 did not write ({shown}); it is never replaced, "
                    "choose another output folder"
                )

    def commit(self) -> None:
        """Move the finished temporary onto ``path`` (replacing the old one if allowed)."""
        try:
            self._check_target()
        except OutputError:
            self.discard()
            raise
        if self._folder:
            names = sorted(p.name for p in self.temp.iterdir())
            (self.temp / MANIFEST).write_text(json.dumps({"files": names}))
        if self._folder and self.path.is_dir():  # swap, then remove the old folder
            old = reserve_temp(self.path, folder=True, suffix=".old")
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


def _try_lock(handle: IO[bytes]) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it."""
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # PermissionError: held, on Windows
        return False
    return True


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[None]:
    """Hold ``path`` for one writer: a second run writing it meanwhile is refused.

    The claim is an exclusive lock on a hidden ``.<name>.seedvr2-lock`` file beside ``path``
    (removed afterwards). While it is held, the temporaries that killed runs left for ``path``
    are deleted: nothing else can be writing them.

    Raises:
        OutputError: another process is writing ``path``, or its folder cannot be written.
    """
    lock = path.with_name(f".{path.name}.seedvr2-lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+b")  # noqa: SIM115 - held for the whole block
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(f"{path}: cannot write to folder {path.parent} ({reason})") from None
    try:
        try:
            locked = _try_lock(handle)
        except OSError as error:
            raise OutputError(f"{path}: cannot lock {lock} ({error.strerror})") from None
        if not locked:
            raise OutputError(
                f"{path}: another seedvr2 run is writing it; wait for it or choose another output"
            )
        leftovers = temp_pattern(path)
        for entry in path.parent.iterdir():
            if leftovers.fullmatch(entry.name):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
        yield
    finally:
        lock.unlink(missing_ok=True)
        handle.close()
