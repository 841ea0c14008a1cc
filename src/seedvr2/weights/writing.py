"""Writing a weights output atomically: into a temporary beside it, renamed onto it when complete.

A crash or an exception leaves the previous file (if any) untouched and no half-written file under
the final name. The finished file has the permissions of any newly created file (``0o666`` less
the umask), whatever the writer did: safetensors writes through a private (``0o600``) temporary
of its own. Checking whether ``path`` may be replaced is the caller's part.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

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
