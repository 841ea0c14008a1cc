"""SHA-256 checks of weights files against pins and manifests.

Digests are remembered across runs (:func:`seedvr2.digests.file_sha256`), so an unchanged 33 GB
model is not hashed again. Manifests are ``sha256sum`` files, the format ``seedvr2 convert``
writes beside its output as ``NAME.sha256``: lines of ``<64 hex digits>  <file name>``.
"""

from __future__ import annotations

import re
from pathlib import Path

from seedvr2.digests import file_sha256, sha256_of
from seedvr2.errors import CheckpointError

__all__ = ["check_sha256", "file_sha256", "manifest_digest", "sha256_of"]

_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # sha256sum: text (two spaces) or binary (" *")


def check_sha256(path: Path, expected: str, source: str, remedy: str) -> None:
    """Raise unless ``path`` hashes to ``expected`` (named by ``source``); never deletes."""
    actual = file_sha256(path)
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
