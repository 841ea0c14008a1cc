"""Resumable renders: restored frames saved in segments as they finish, reused after a crash.

A video render keeps a hidden work folder next to its output, named from a hash of everything
that changes its frames: the SHA-256 of the input's and the model's files, every setting, the
seedvr2 and torch versions, the device and the dtype. A folder of another key is never read. Each
segment holds whole output frames as losslessly compressed 16-bit codes, their timestamps, and the
:class:`StreamCursor` to go on from (the next batch and the exact float32 cross-fade tail).
Before reuse a segment is checked against the render's plan (batches, frame count, frame size,
tail); one that is unreadable or does not fit is dropped, with the segments after it, and
rendered again. Fresh and reloaded frames reach the encoder through the same 16-bit rounding, so
a resumed output is identical to an uninterrupted one. The folder is removed when the output is
complete.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .frame_packing import pack_codes, unpack_codes
from .restorer import BatchOutput, StreamCursor

log = logging.getLogger(__name__)

SEGMENT_FRAMES = 48  # output frames per segment file (a segment always ends after a batch)
CODE_MAX = 65535  # 16-bit codes: finer than any output format the writer produces
PREFIX = ".seedvr2-"  # work folders are named ``.<output name>.seedvr2-<key>``


def quantize(image: np.ndarray) -> np.ndarray:  # (H, W, c) float [0, 1] -> uint16 codes
    """Round a frame to the 16-bit codes stored in segments."""
    return np.rint(np.clip(image, 0, 1) * CODE_MAX).astype(np.uint16)


def dequantize(codes: np.ndarray) -> np.ndarray:  # (H, W, c) uint16 -> float32 [0, 1]
    """The frame the encoder gets from 16-bit codes."""
    return codes.astype(np.float32) / CODE_MAX


@dataclass(frozen=True)
class Segment:
    """Output frames of batches ``[first, cursor.next_batch)`` and the cursor after them."""

    first: int
    frames: list[np.ndarray]  # each (H, W, c) uint16 codes
    pts: np.ndarray  # (n,) int64 source timestamps
    cursor: StreamCursor


class BadSegment(Exception):
    """A segment file that cannot be read or does not fit the render."""


def _load(file: Path, first: int) -> Segment:
    try:
        with np.load(file, allow_pickle=False) as data:
            count, shape = int(data["count"]), tuple(int(n) for n in data["shape"])
            frames = [unpack_codes(data[f"frame{i}"].tobytes(), shape) for i in range(count)]
            pending = torch.from_numpy(data["pending"].copy())
            cursor = StreamCursor(int(data["next_batch"]), pending)
            return Segment(first, frames, data["pts"].copy(), cursor)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise BadSegment(f"unreadable ({type(error).__name__}: {error})") from None


def _check(segment: Segment, layout: list[BatchOutput], shape: tuple[int, int, int]) -> None:
    """Raise BadSegment unless ``segment`` is what the render's plan makes of its batches."""
    first, after = segment.first, segment.cursor.next_batch
    if not first < after <= len(layout):
        raise BadSegment(f"batches {first}-{after} are not in this render's {len(layout)}")
    expected = sum(out.frames for out in layout[first:after])
    if len(segment.frames) != expected or len(segment.pts) != expected:
        raise BadSegment(f"{len(segment.frames)} frames where the plan makes {expected}")
    if any(frame.shape != shape for frame in segment.frames):
        raise BadSegment(f"a frame is not {shape[1]}x{shape[0]} with {shape[2]} channels")
    tail = segment.cursor.pending
    tail_shape = (layout[after - 1].pending, shape[2], shape[0], shape[1])
    if tail.dtype != torch.float32 or tuple(tail.shape) != tail_shape:
        raise BadSegment(f"its cross-fade tail is {tuple(tail.shape)}, not {tail_shape}")
    if np.any(np.diff(segment.pts) <= 0):
        raise BadSegment("its timestamps do not increase")


class WorkFolder:
    """The segments of one render: ``<first batch>-<next batch>.npz`` files in a hidden folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_render(cls, output: Path, key: dict[str, Any]) -> WorkFolder:
        """The folder for a render into ``output`` of everything in ``key``."""
        text = json.dumps(key, sort_keys=True, default=repr)
        digest = hashlib.sha256(text.encode()).hexdigest()[:24]
        return cls(output.parent / f".{output.name}{PREFIX}{digest}")

    def stale(self) -> list[Path]:
        """Work folders of earlier renders into the same output with another key."""
        head = self.path.name[: self.path.name.rindex(PREFIX) + len(PREFIX)]
        ours = re.compile(re.escape(head) + "[0-9a-f]{24}")
        return [
            p for p in self.path.parent.glob(f"{glob.escape(head)}*")
            if p != self.path and p.is_dir() and ours.fullmatch(p.name)
        ]  # fmt: skip

    def finished(self) -> list[tuple[int, Path]]:
        """Segment files that chain from the first batch without a gap, in order."""
        spans = {}
        for file in self.path.glob("*.npz") if self.path.is_dir() else ():
            first, _, after = file.stem.partition("-")
            if first.isdigit() and after.isdigit():
                spans[int(first)] = (int(after), file)
        chain, batch = [], 0
        while batch in spans:
            after, file = spans[batch]
            chain.append((batch, file))
            batch = after
        return chain

    def segments(
        self, layout: list[BatchOutput], shape: tuple[int, int, int]
    ) -> Iterator[Segment]:
        """The finished segments that fit the plan (``layout``, frames of ``shape`` (H, W, c)).

        The first one that does not is deleted with all after it, with a warning.
        """
        chain = self.finished()
        for number, (first, file) in enumerate(chain):
            try:
                segment = _load(file, first)
                _check(segment, layout, shape)
            except BadSegment as error:
                log.warning("resume: discarding segment %s (%s); rendering from there", file.name,
                            error)  # fmt: skip
                for _, later in chain[number:]:
                    later.unlink(missing_ok=True)
                return
            yield segment

    def save(self, first: int, frames: list[np.ndarray], pts: list[int], cursor: StreamCursor) -> None:
        """Store frames (each (H, W, c) uint16) restored from batch ``first`` up to ``cursor``."""
        assert cursor.pending is not None  # a cursor after a batch always has its tail
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{first:06d}-{cursor.next_batch:06d}.npz"
        temp = self.path / f".{name}.partial"
        arrays = {f"frame{i}": np.frombuffer(pack_codes(f), np.uint8) for i, f in enumerate(frames)}
        try:
            with open(temp, "wb") as file:
                np.savez(
                    file,
                    count=np.int64(len(frames)),
                    shape=np.asarray(frames[0].shape, np.int64),
                    pts=np.asarray(pts, np.int64),
                    pending=cursor.pending.numpy(),
                    next_batch=np.int64(cursor.next_batch),
                    **arrays,
                )
                file.flush()
                os.fsync(file.fileno())  # on disk before the rename: a power cut keeps whole ones
            os.replace(temp, self.path / name)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        """Delete the folder and every segment in it."""
        shutil.rmtree(self.path, ignore_errors=True)
