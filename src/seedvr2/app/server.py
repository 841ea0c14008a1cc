"""``seedvr2 serve``: start the page and API on one loaded model, queue jobs, clean up at exit."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from seedvr2.errors import InputError

from .models import ModelPool, model_choices
from .uploads import Limits
from .work import server_root


@dataclass(frozen=True)
class ServeOptions:
    """What ``seedvr2 serve`` is given."""

    models: list[str] = field(default_factory=list)  # the first is the default; [] = bundled
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # USER:PASS
    max_upload_mb: float | None = 500.0
    max_seconds: float | None = 600.0
    concurrency: int = 1  # jobs restoring at once (one per GPU is the sensible number)
    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    cache_dir: str | None = None
    offline: bool = False

    def credentials(self) -> tuple[str, str] | None:
        """``auth`` as (user, password).

        Raises:
            InputError: not USER:PASS.
        """
        if self.auth is None:
            return None
        user, colon, password = self.auth.partition(":")
        if not (user and colon and password):
            raise InputError("--auth must be USER:PASSWORD, both non-empty")
        return user, password


def serve(options: ServeOptions) -> None:
    """Load the default model, then serve until interrupted; the server's files go at exit."""
    credentials = options.credentials()
    from . import page  # gradio, only now

    cache = None if options.cache_dir is None else Path(options.cache_dir)
    pool = ModelPool(model_choices(options.models, cache), device=options.device,
                     dtype=options.dtype, offload=options.offload, cache_dir=options.cache_dir,
                     offline=options.offline)  # fmt: skip
    pool.restorer(next(iter(pool.choices)))  # load once, before the first visitor waits on it
    root = server_root()
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio"))  # uploads and results too
    limit = None if options.max_upload_mb is None else int(options.max_upload_mb * 2**20)
    limits = Limits(limit, options.max_seconds)
    demo = page.build(page.Page(pool, limits, root), options.concurrency)
    demo.queue(default_concurrency_limit=options.concurrency)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service stop cleans up as Ctrl-C
    try:
        demo.launch(server_name=options.host, server_port=options.port, auth=credentials,
                    max_file_size=limit, show_error=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
