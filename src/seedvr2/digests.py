"""SHA-256 of files, remembered across runs while the file is unchanged.

Hashing a 30 GB checkpoint takes a minute, so a digest is kept in a small JSON file in the user's
cache folder (``$SEEDVR2_CACHE_DIR``, else ``$XDG_CACHE_HOME/seedvr2``, else ``~/.cache/seedvr2``)
with the file's identity: device, inode, size, modification and status-change times. Any write to
the file changes its status-change time (which no tool can set back), so a remembered digest is
only reused for the same bytes; otherwise the file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

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


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _load(store: Path) -> dict[str, list]:
    try:
        entries = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, from the cache when the file is unchanged since it was hashed."""
    path = Path(path).resolve()
    identity = _identity(path.stat())
    store = cache_folder() / "digests.json"
    entries = _load(store)
    known = entries.get(str(path))
    if isinstance(known, list) and known[:-1] == identity:
        return str(known[-1])
    digest = sha256_of(path)
    if _identity(path.stat()) != identity:  # written to while hashed: do not remember
        return digest
    entries[str(path)] = [*identity, digest]
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        temp = store.with_name(f".{store.name}.{os.getpid()}.partial")
        temp.write_text(json.dumps(entries))
        os.replace(temp, store)
    except OSError:  # a read-only home: hash again next time
        pass
    return digest
