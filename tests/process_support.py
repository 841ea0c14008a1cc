"""Child processes that a test stops with Ctrl-C, or watches end."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def default_sigint() -> None:
    """``preexec_fn``: the child takes Ctrl-C even when the tests run as a background job (the
    shell then ignores SIGINT, the children inherit that, and Python installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finalization_marks(folder: Path, pythonpath: str) -> str:
    """A ``PYTHONPATH`` (``pythonpath`` after a ``sitecustomize``) under which every Python
    process that ends through the interpreter's finalization leaves ``folder/finalized-<pid>``
    (its atexit handlers run); one that ends through ``os._exit`` leaves nothing."""
    hooks = folder / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import atexit, os, pathlib\n"
        f"atexit.register(lambda: pathlib.Path({str(folder)!r}, f'finalized-{{os.getpid()}}')"
        ".touch())\n"
    )
    return f"{hooks}{os.pathsep}{pythonpath}"
