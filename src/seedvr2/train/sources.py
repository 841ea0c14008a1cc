"""Training media: find videos and images in folders or a manifest, and read clips.

Decoding goes through :mod:`seedvr2.media` (PyAV; colour matrices, rotation and bit depth
handled there): a clip is decoded as a stream from the keyframe before its first frame, so 5
frames out of a long 720p video cost a few frames of decoding, not the whole file (spec §1a
"Data"). Each process keeps its recently opened sources, so a video's frame index is built once.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seedvr2.errors import InputError
from seedvr2.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaSource, open_media

_OPEN_SOURCES = 64  # opened sources remembered per process


@dataclass(frozen=True)
class MediaEntry:
    """One high-quality video (or a frame range of one) or image."""

    path: str
    frames: int  # usable frames (1 for images)
    height: int
    width: int
    text: str | None = None  # optional per-item text-embedding file (from a manifest)
    first: int = 0  # index of the first usable frame in the file


@dataclass(frozen=True)
class ManifestItem:
    """A manifest line: ``path`` or ``{"path", "text", "frames": [first, end]}``."""

    path: Path
    text: str | None = None
    frames: tuple[int, int | None] = (0, None)  # [first, end) frames; end None: to the last


def probe(item: ManifestItem) -> MediaEntry:
    """Frame count and size of a video or image file (restricted to the item's frame range)."""
    info = open_media(item.path).info
    total = info.frame_count or 0
    first, end = item.frames
    end = total if end is None else min(end, total)
    if not 0 <= first < end:
        raise InputError(f"{item.path}: frame range {list(item.frames)} is empty ({total} frames)")
    return MediaEntry(str(item.path), end - first, info.height, info.width, item.text, first)


def scan_folder(root: str | Path) -> list[Path]:
    """Video and image files under ``root``, recursively, in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data root {root} is not a folder")
    suffixes = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def listing_sha256(folders: tuple[str, ...], manifest: str | None) -> str:
    """SHA-256 of what the training data names: every video and image under ``folders`` (as
    :func:`scan_folder` finds them; path relative to its folder, byte size) and every file the
    manifest lists (its path as written, byte size).

    Media added, removed, renamed or resized change it; a file rewritten in place at the same
    size does not (hashing every video at each run start would cost minutes on a large set),
    nor does a file training never reads (a README beside the clips).
    """
    digest = hashlib.sha256()
    for index, folder in enumerate(folders):
        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"data folder {root} is not a folder (to train from a latent cache "
                             "alone, leave data.roots and data.paired out)")
        for path in scan_folder(root):
            digest.update(f"{index}\t{path.relative_to(root).as_posix()}\t"
                          f"{path.stat().st_size}\n".encode())
    for item in read_manifest(manifest) if manifest is not None else ():
        size = item.path.stat().st_size if item.path.is_file() else -1
        digest.update(f"manifest\t{item.path.as_posix()}\t{size}\n".encode())
    return digest.hexdigest()


def read_manifest(path: str | Path) -> list[ManifestItem]:
    """Items of a manifest: a path per line, or JSON lines ``{"path", "text", "frames"}``.

    Relative paths are relative to the manifest's folder; blank lines and ``#`` comments are
    skipped. ``frames: [first, end]`` keeps a frame range (for example to hold out a clip's tail).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = json.loads(line) if line.startswith("{") else {"path": line}
        unknown = set(entry) - {"path", "text", "frames"}
        if "path" not in entry or unknown:
            raise InputError(f"{path}:{number}: need a 'path' and only path/text/frames keys")
        text = entry.get("text")
        first, end = entry.get("frames", (0, None))
        items.append(ManifestItem(
            path.parent / entry["path"],
            str(path.parent / text) if text is not None else None,
            (int(first), None if end is None else int(end)),
        ))
    return items


def build_index(roots: tuple[str, ...], manifest: str | None) -> list[MediaEntry]:
    """Probe every file of the folders and the manifest, in a fixed order."""
    items = [ManifestItem(p) for root in roots for p in scan_folder(root)]
    if manifest is not None:
        items += read_manifest(manifest)
    if not items:
        raise InputError(f"no videos or images found in data.roots {list(roots)} / {manifest}")
    return [probe(item) for item in items]


class SourceCache:
    """The most recently opened :class:`MediaSource` objects of this process, by path."""

    def __init__(self, size: int = _OPEN_SOURCES) -> None:
        self.size = size
        self.sources: OrderedDict[str, MediaSource] = OrderedDict()

    def get(self, path: str) -> MediaSource:
        source = self.sources.pop(path, None) or open_media(path)
        self.sources[path] = source
        if len(self.sources) > self.size:
            self.sources.popitem(last=False)
        return source


def read_clip(
    entry: MediaEntry, start: int, count: int, sources: SourceCache | None = None
) -> torch.Tensor:  # (f, h, w, 3) float32 in [0, 1]
    """Usable frames ``[start, start + count)`` of an entry (an image: its only frame)."""
    if start < 0 or start + count > entry.frames:
        raise InputError(f"frames {start}..{start + count} outside {entry.path} ({entry.frames})")
    source = (sources or SourceCache(1)).get(entry.path)
    frames = [f.image[..., :3] for f in source.frames(entry.first + start, count)]
    if len(frames) != count:
        raise InputError(f"{entry.path}: decoded {len(frames)} of {count} frames from {start}")
    return torch.from_numpy(np.stack(frames))
