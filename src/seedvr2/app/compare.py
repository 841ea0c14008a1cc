"""Frame pairs for the before/after slider: the input scaled to the output size, and the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seedvr2.media import open_media

MAX_PAIRS = 12  # frames offered on the slider
MAX_SIDE = 1280  # long side of the pictures shown


def picked_frames(count: int, pairs: int = MAX_PAIRS) -> list[int]:
    """Up to ``pairs`` evenly spaced frame indices of a ``count``-frame clip, first and last kept."""
    if count <= pairs:
        return list(range(count))
    return sorted({round(i * (count - 1) / (pairs - 1)) for i in range(pairs)})


def _frames(path: Path, indices: list[int]) -> list[np.ndarray]:  # each (h, w, 3) float32
    wanted = set(indices)
    return [f.image[..., :3] for f in open_media(path).frames() if f.index in wanted]


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # (h, w, 3) -> (H, W, 3)
    if image.shape[:2] == size:
        return image
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


def comparison(before: Path, after: Path, count: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(frame index, before, after)`` uint8 (H, W, 3) pictures of the same size, the input
    resized (bicubic) to the output's size, both at most :data:`MAX_SIDE` on the long side."""
    indices = picked_frames(count)
    outputs = _frames(after, indices)
    height, width = outputs[0].shape[:2]
    shrink = min(1.0, MAX_SIDE / max(height, width))
    size = (max(1, round(height * shrink)), max(1, round(width * shrink)))
    return [
        (index, _uint8(_resized(source, size)), _uint8(_resized(output, size)))
        for index, source, output in zip(indices, _frames(before, indices), outputs)
    ]
