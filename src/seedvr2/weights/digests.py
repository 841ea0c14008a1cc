"""SHA-256 checks of weights files, remembered so that a 33 GB model is not re-hashed every run.

A file's digest is remembered in a stamp under seedvr2's own cache folder (``$SEEDVR2_CACHE``,
else ``$XDG_CACHE_HOME/seedvr2``, else ``~/.cache/seedvr2``): ``verified/<hash of the path>.json``
holding the resolved path, size, modification time (ns), inode and digest. When any of these
differ the file is hashed again. Nothing is written next to the user's files. (A stamp is a
speed-up, not a seal: whoever can rewrite a file and restore its mtime can also edit the stamp.)

Manifests are ``sha256sum`` files, the format ``seedvr2 convert`` writes beside its output as
``NAME.sha256``: lines of ``<64 hex digits>  <file name>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from pathlib import Path

from seedvr2.errors import CheckpointError

log = logging.getLogger(__name__)
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # sha256sum: text (two spaces) or binary (" *")


def sha256_of(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def stamp_folder() -> Path:
    """Where remembered digests live (see the module doc)."""
    if os.environ.get("SEEDVR2_CACHE"):
        return Path(os.environ["SEEDVR2_CACHE"]) / "verified"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seedvr2" / "verified"


def _identity(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "inode": stat.st_ino}  # fmt: skip


def remembered_sha256(path: str | Path) -> str:
    """SHA-256 of ``path``, from its stamp when the file is unchanged, else hashed (and stamped)."""
    path = Path(path).resolve()
    identity = _identity(path)
    stamp = stamp_folder() / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        stored = json.loads(stamp.read_text())
        if {k: stored.get(k) for k in identity} == identity and _DIGEST.fullmatch(stored["sha256"]):
            return stored["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no stamp, or an unreadable one: hash the file
    digest = sha256_of(path)
    temp = stamp.with_name(f".{stamp.name}.{secrets.token_hex(4)}")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps({**identity, "sha256": digest}))
        os.replace(temp, stamp)
    except OSError as error:
        temp.unlink(missing_ok=True)
        log.warning("cannot remember the SHA-256 of %s in %s (%s); it will be hashed again next "
                    "time", path, stamp.parent, error)  # fmt: skip
    return digest


def check_sha256(path: Path, expected: str, source: str, remedy: str) -> None:
    """Raise unless ``path`` hashes to ``expected`` (named by ``source``); never deletes."""
    actual = remembered_sha256(path)
    if actual != expected.lower():
        raise CheckpointError(
            f"{path} is corrupt or not the expected file: its SHA-256 is {actual}, {source} says "
            f"{expected.lower()}; {remedy}"
        )


def manifest_digest(manifest: Path, name: str) -> str:
    """The digest a ``sha256sum``-style ``manifest`` gives for file ``name``."""
    try:
        lines = manifest.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read the manifest {manifest}: {error}") from None
    for line in filter(str.strip, lines):
        match = _LINE.fullmatch(line.strip())
        if match is None:
            raise CheckpointError(
                f"{manifest} is not a sha256sum manifest (line {line[:80]!r}); expected "
                "'<64 hex digits>  <file name>' lines"
            )
        if match.group(2) == name:
            return match.group(1).lower()
    raise CheckpointError(f"{manifest} does not list {name}; fix or remove the manifest")
