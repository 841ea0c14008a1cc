"""Each job's own temporary folder, and asking a running job to stop."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seedvr2.errors import SeedVR2Error


class Cancelled(SeedVR2Error):
    """The user stopped the job."""


@contextmanager
def job_folder(root: Path) -> Iterator[Path]:
    """A new, private folder under ``root`` for one job, removed with all it holds at the end,
    whether the job finished, failed or was cancelled."""
    folder = root / f"job-{uuid.uuid4().hex}"
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def server_root() -> Path:
    """A private folder for this server's jobs and Gradio files (the server removes it at exit)."""
    return Path(tempfile.mkdtemp(prefix="seedvr2-serve-"))


class StopSwitch:
    """One per browser session: Cancel sets it; the session's running job checks it."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, session: str) -> threading.Event:
        """The session's event (created cleared on first use)."""
        with self._lock:
            return self._events.setdefault(session, threading.Event())

    def forget(self, session: str) -> None:
        """Drop a closed session's event."""
        with self._lock:
            self._events.pop(session, None)
