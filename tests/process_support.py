"""Child processes that a test stops with Ctrl-C."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn``: the child takes Ctrl-C even when the tests run as a background job (the
    shell then ignores SIGINT, the children inherit that, and Python installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
