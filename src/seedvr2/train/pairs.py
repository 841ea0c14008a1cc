"""Paired training data: real LQ/HQ clips in ``FOLDER/lq`` and ``FOLDER/hq``, matched by path.

``lq/a/clip.mp4`` pairs with ``hq/a/clip.mov`` (the relative path without its extension); items
are videos, images, or with ``data.sequences`` folders of images (one clip each). The two sides
may differ by any scale, the same for height and width (within a pixel); frame counts must
match. Every pair is checked when the run starts and all bad ones are named at once.

Dimension key: ``c`` channels, ``f`` frames, ``h w`` HQ pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from seedvr2.errors import InputError
from seedvr2.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from seedvr2.models.dit.config import ConditionResize
from seedvr2.pipeline.sizing import upscale_lq

from .sources import ManifestItem, MediaEntry, SourceCache, probe, read_clip

_LISTED = 10  # bad pairs named in the error


@dataclass(frozen=True)
class Pair:
    """One HQ clip and its real LQ version."""

    hq: MediaEntry
    lq: MediaEntry

    @property
    def frames(self) -> int:
        return self.hq.frames

    @property
    def text(self) -> None:
        return None

    def read(
        self, start: int, count: int, sources: SourceCache,
        resize: ConditionResize = "bicubic_antialias",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """HQ frames and LQ frames resized to the HQ size by ``resize``, both (c, f, h, w) in
        [0, 1]."""
        hq = rearrange(read_clip(self.hq, start, count, sources), "f h w c -> c f h w")
        lq = rearrange(read_clip(self.lq, start, count, sources), "f h w c -> f c h w")
        if lq.shape[-2:] != hq.shape[-2:]:
            lq = upscale_lq(lq, hq.shape[-2:], resize)
        return hq, rearrange(lq, "f c h w -> c f h w")


def _items(root: Path, sequences: bool) -> tuple[dict[str, Path], list[str]]:
    """Relative path without extension -> media file (or image folder); and name clashes."""
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
    items: dict[str, Path] = {}
    clashes = []
    for path in files:
        if sequences and path.suffix.lower() in IMAGE_EXTENSIONS:
            if path.parent == root:
                clashes.append(f"{path} is an image directly in {root} (with data.sequences "
                               "every clip is a folder of images)")
                continue
            path = path.parent  # a frame of a sequence: the folder is the item
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in items and items[key] != path:
            clashes.append(f"{items[key]} and {path} share the name {key}")
        items[key] = path
    return items, clashes


def _scale_explains(hq: MediaEntry, lq: MediaEntry) -> bool:
    """The height ratio also maps the LQ width onto the HQ width, up to the rounding of an LQ
    side (one LQ pixel: ``scale`` HQ pixels)."""
    scale = hq.height / lq.height
    return abs(lq.width * scale - hq.width) <= max(1.0, scale)


def _size(entry: MediaEntry) -> str:
    return f"{entry.width}x{entry.height}, {entry.frames} frame(s)"


def scan_pairs(folder: str | Path, sequences: bool = False) -> list[Pair]:
    """The checked pairs of one paired folder.

    Raises:
        InputError: the folder lacks ``lq/`` or ``hq/``, or has bad pairs (each named: a missing
            partner, different frame counts, sizes no single scale relates).
    """
    folder = Path(folder)
    roots = {side: folder / side for side in ("hq", "lq")}
    if not all(root.is_dir() for root in roots.values()):
        raise InputError(f"data.paired: {folder} needs the sub-folders lq/ and hq/")
    (hq, hq_clashes), (lq, lq_clashes) = (_items(roots[s], sequences) for s in ("hq", "lq"))
    problems = hq_clashes + lq_clashes
    problems += [f"{hq[k]} has no partner in {roots['lq']}" for k in sorted(hq.keys() - lq.keys())]
    problems += [f"{lq[k]} has no partner in {roots['hq']}" for k in sorted(lq.keys() - hq.keys())]
    pairs = []
    for key in sorted(hq.keys() & lq.keys()):
        pair = Pair(probe(ManifestItem(hq[key])), probe(ManifestItem(lq[key])))
        if pair.hq.frames != pair.lq.frames or not _scale_explains(pair.hq, pair.lq):
            problems.append(f"{hq[key]} ({_size(pair.hq)}) and {lq[key]} ({_size(pair.lq)}) "
                            "differ in frames or aspect")
        else:
            pairs.append(pair)
    if problems:
        more = f" (+{len(problems) - _LISTED} more)" if len(problems) > _LISTED else ""
        raise InputError(f"data.paired: {len(problems)} bad pair(s) in {folder}: "
                         f"{'; '.join(problems[:_LISTED])}{more}; fix or remove them")
    if not pairs:
        raise InputError(f"data.paired: no pairs in {folder} (videos or images under lq/ and hq/)")
    return pairs
