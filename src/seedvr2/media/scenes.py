"""A cheap shot-cut detector on frame differences, for cutting temporal batches at cuts.

Each frame is reduced to a small luma thumbnail (block means, about 64 px wide); the score of
frame ``i`` is the mean absolute difference to frame ``i - 1``. A cut is declared where the score
exceeds the mean score of the recent frames by ``threshold`` and is also ``ratio`` times that
mean, so steady motion (pans, noise) that keeps every score high does not trigger cuts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

from .types import Frame

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _thumbnail(image: np.ndarray, width: int = 64) -> np.ndarray:  # (h, w, c) -> (h', w')
    luma = image[..., :3] @ _LUMA if image.ndim == 3 else image
    block = max(1, luma.shape[1] // width)
    rows, cols = luma.shape[0] // block * block, luma.shape[1] // block * block
    cropped = luma[:rows, :cols]
    return cropped.reshape(rows // block, block, cols // block, block).mean(axis=(1, 3))


def detect_scene_cuts(
    frames: Iterable[np.ndarray | Frame] | np.ndarray,  # (t, h, w, c) or an iterable of frames
    threshold: float = 0.08,
    ratio: float = 2.0,
    window: int = 8,
    min_scene: int = 4,
) -> list[int]:
    """Indices of the frames that start a new shot (never 0), in increasing order.

    Args:
        frames: float images in [0, 1] (or :class:`Frame` objects), streamed one at a time.
        threshold: how far (in mean absolute luma, 0-1) the change must exceed the mean change
            of the last ``window`` frames.
        ratio: how many times that mean the change must also be.
        window: frames of history for that mean.
        min_scene: a cut closer than this many frames to the previous one is ignored.
    """
    cuts: list[int] = []
    recent: deque[float] = deque(maxlen=window)
    previous: np.ndarray | None = None
    for index, frame in enumerate(frames):
        image = frame.image if isinstance(frame, Frame) else np.asarray(frame, np.float32)
        thumb = _thumbnail(image)
        if previous is not None:
            score = float(np.abs(thumb - previous).mean())
            baseline = sum(recent) / len(recent) if recent else 0.0
            far_enough = index - (cuts[-1] if cuts else 0) >= min_scene
            if score - baseline > threshold and score > ratio * baseline and far_enough:
                cuts.append(index)
                recent.clear()  # statistics restart with the new shot
            else:
                recent.append(score)
        previous = thumb
    return cuts
