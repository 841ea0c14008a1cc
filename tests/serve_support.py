"""A `seedvr2 serve` process for the app tests, and the browser they drive it with."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from process_support import default_sigint

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``seedvr2 serve`` in a child process whose temporary files all go under ``tmp``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(SRC), "GRADIO_ANALYTICS_ENABLED": "False"}
        env.pop("GRADIO_TEMP_DIR", None)
        self.log = tmp / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "seedvr2", "serve", "--port", str(self.port), "--device", "cpu", *args],
            cwd=tmp, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            preexec_fn=default_sigint,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the server did not answer: {self.log.read_text()}")

    def roots(self) -> list[Path]:
        """The server's private folders (one while it runs)."""
        return sorted(self.tmp.glob("seedvr2-serve-*"))

    def job_folders(self) -> list[Path]:
        return [p for root in self.roots() for p in root.glob("job-*")]

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def chromium() -> str:
    """Debian's chromium; skipped (never under CI) when it is not installed."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("the browser tests need Debian's chromium (apt-get install chromium)")
    return path


def artefacts(tmp: Path) -> Path:
    """Where test artefacts (screenshots) go: $SEEDVR2_TEST_ARTEFACTS, else ``tmp``."""
    folder = Path(os.environ.get("SEEDVR2_TEST_ARTEFACTS") or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
