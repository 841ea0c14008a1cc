"""Resumable renders: restored frames saved in segments as they finish, reused after a crash.

A video render keeps a hidden work folder next to its output, named from a hash of the input
(path, size, modification time) and every setting that changes pixels. Each segment holds whole
output frames as 16-bit RGB, their source timestamps, and the :class:`StreamCursor` to go on
from: the next batch and the exact float32 cross-fade tail. Fresh and reloaded frames reach the
encoder through the same 16-bit rounding, so a resumed output decodes identical to an
uninterrupted one. The folder is removed when the output is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .restorer import StreamCursor

SEGMENT_FRAMES = 48  # output frames per segment file (a segment always ends after a batch)
CODE_MAX = 65535  # 16-bit codes: finer than any output format the writer produces


def quantize(image: np.ndarray) -> np.ndarray:  # (H, W, c) float [0, 1] -> uint16 codes
    """Round a frame to the 16-bit codes stored in segments."""
    return np.rint(np.clip(image, 0, 1) * CODE_MAX).astype(np.uint16)


def dequantize(codes: np.ndarray) -> np.ndarray:  # (H, W, c) uint16 -> float32 [0, 1]
    """The frame the encoder gets from 16-bit codes."""
    return codes.astype(np.float32) / CODE_MAX


@dataclass(frozen=True)
class Segment:
    """Output frames ``[first, first + len(frames))`` of a render and the cursor after them."""

    frames: np.ndarray  # (n, H, W, c) uint16 codes
    pts: np.ndarray  # (n,) int64 source timestamps
    cursor: StreamCursor


def _fingerprint(path: Path) -> list[Any]:
    """Path, size and modification time of a file, or of each file in a folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


class WorkFolder:
    """The segments of one render: ``<first batch>-<next batch>.npz`` files in a hidden folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_render(cls, source: Path, output: Path, settings: dict[str, Any]) -> WorkFolder:
        """The folder for ``source`` rendered into ``output`` with pixel-relevant ``settings``."""
        key = json.dumps([_fingerprint(source), settings], sort_keys=True, default=repr)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return cls(output.parent / f".{output.name}.seedvr2-{digest}")

    def finished(self) -> list[Path]:
        """Segment files that chain from the first batch without a gap, in order."""
        spans = {}
        for file in self.path.glob("*.npz") if self.path.is_dir() else ():
            first, _, after = file.stem.partition("-")
            if first.isdigit() and after.isdigit():
                spans[int(first)] = (int(after), file)
        chain, batch = [], 0
        while batch in spans:
            batch, file = spans[batch]
            chain.append(file)
        return chain

    def segments(self) -> Iterator[Segment]:
        """The finished segments, loaded one at a time."""
        for file in self.finished():
            with np.load(file) as data:
                pending = torch.from_numpy(data["pending"])
                cursor = StreamCursor(int(data["next_batch"]), pending)
                yield Segment(data["frames"], data["pts"], cursor)

    def save(self, first: int, frames: list[np.ndarray], pts: list[int], cursor: StreamCursor) -> None:
        """Store frames (each (H, W, c) uint16) restored from batch ``first`` up to ``cursor``."""
        assert cursor.pending is not None  # a cursor after a batch always has its tail
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{first:06d}-{cursor.next_batch:06d}.npz"
        temp = self.path / f".{name}.partial"
        with open(temp, "wb") as file:
            np.savez(
                file,
                frames=np.stack(frames),
                pts=np.asarray(pts, np.int64),
                pending=cursor.pending.numpy(),
                next_batch=np.int64(cursor.next_batch),
            )
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename: a power cut keeps whole segments
        os.replace(temp, self.path / name)

    def remove(self) -> None:
        """Delete the folder and every segment in it."""
        shutil.rmtree(self.path, ignore_errors=True)
