"""SHA-256 of files, remembered across runs while the file is unchanged.

Hashing a 30 GB checkpoint takes a minute, so a file's digest is remembered in a stamp under
seedvr2's own cache folder (``$SEEDVR2_CACHE_DIR``, else ``$XDG_CACHE_HOME/seedvr2``, else
``~/.cache/seedvr2``): ``digests/<hash of the path>.json`` with the file's identity (device,
inode, size, modification and status-change times). Any write to a file changes its
status-change time, which no tool can set back, so a remembered digest is reused only for the
same bytes; otherwise the file is hashed again. Nothing is written next to the user's files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from pathlib import Path

log = logging.getLogger(__name__)
_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 24


def cache_folder() -> Path:
    """Where seedvr2 keeps its own small files."""
    if folder := os.environ.get("SEEDVR2_CACHE_DIR"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seedvr2"


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes, read in full."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: Path) -> list[object]:
    stat = path.stat()
    return [str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of ``path``, from its stamp when the file is unchanged, else hashed and stamped."""
    path = Path(path).resolve()
    identity = _identity(path)
    stamp = cache_folder() / "digests" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        stored = json.loads(stamp.read_text())
        if stored["identity"] == identity and _DIGEST.fullmatch(stored["sha256"]):
            return stored["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no stamp, or an unreadable one: hash the file
    digest = sha256_of(path)
    if _identity(path) != identity:  # written to while it was hashed: do not remember
        return digest
    temp = stamp.with_name(f".{stamp.name}.{secrets.token_hex(4)}")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps({"identity": identity, "sha256": digest}))
        os.replace(temp, stamp)
    except OSError as error:
        temp.unlink(missing_ok=True)
        log.warning("cannot remember the SHA-256 of %s in %s (%s); it will be hashed again next "
                    "time", path, stamp.parent, error)  # fmt: skip
    return digest


def tree_sha256(path: Path) -> str | dict[str, str]:
    """:func:`file_sha256` of a file, or of every file in a folder by relative name."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {str(f.relative_to(path)): file_sha256(f) for f in files}
    return file_sha256(path)
