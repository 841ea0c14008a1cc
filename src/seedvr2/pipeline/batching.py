"""Temporal batches of a long video: 4n+1 frames, overlap with cross-fade, cut at scene changes.

The VAE maps ``4n+1`` frames to ``n+1`` latent frames, so every batch is padded to that length
(repeating its last frame) and trimmed after decoding. Consecutive batches of one scene overlap;
overlapping output frames are cross-faded with weights strictly between 0 and 1, so there is no
hard seam. Batches never straddle a scene cut, and the last batch of a scene is moved back to full
length when the scene allows it (a tiny last batch is a known artifact source).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seedvr2.errors import InputError


@dataclass(frozen=True)
class TemporalBatch:
    """Source frames ``[start, stop)`` restored together; ``blend`` leading frames overlap."""

    start: int
    stop: int
    blend: int  # frames shared with the previous batch (0 at a scene start)

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def padded_length(self) -> int:
        """Frames fed to the VAE: the next 4n+1 (the official ``cut_videos`` rule)."""
        return pad_to_4n1(self.length)


def pad_to_4n1(frames: int) -> int:
    """Smallest 4n+1 >= frames (1 stays 1; 2-4 become 5)."""
    return frames if frames % 4 == 1 else frames + (1 - frames) % 4


def plan_batches(
    num_frames: int, batch_size: int, overlap: int = 0, cuts: tuple[int, ...] = ()
) -> list[TemporalBatch]:
    """Split ``num_frames`` into batches of at most ``batch_size`` frames.

    Args:
        num_frames: frames of the (trimmed) input.
        batch_size: frames per batch; must be 4n+1 so no padding is needed in full batches.
        overlap: frames shared by consecutive batches of a scene (0 <= overlap < batch_size).
        cuts: frame indices where a new scene starts.
    """
    if num_frames < 1:
        raise InputError("the input has no frames")
    if batch_size < 1 or batch_size % 4 != 1:
        raise InputError(f"--batch-size must be 4n+1 (1, 5, 9, ...), got {batch_size}")
    if not 0 <= overlap < batch_size:
        raise InputError(f"--overlap must be in [0, batch size {batch_size}), got {overlap}")
    bounds = sorted({0, num_frames, *(c for c in cuts if 0 < c < num_frames)})
    batches = []
    for scene_start, scene_stop in zip(bounds, bounds[1:]):
        start, blend = scene_start, 0
        while True:
            stop = min(start + batch_size, scene_stop)
            if stop == scene_stop and start > scene_start:  # uniform last batch
                moved = max(scene_start, stop - batch_size)
                blend += start - moved
                start = moved
            batches.append(TemporalBatch(start, stop, blend))
            if stop == scene_stop:
                break
            start, blend = stop - overlap, overlap
    return batches


def crossfade_weights(frames: int) -> torch.Tensor:
    """Weights (frames,) of the *new* batch over an overlap: (k+1)/(frames+1), in (0, 1)."""
    return torch.arange(1, frames + 1, dtype=torch.float32) / (frames + 1)


def pad_frames(frames: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last frame of (f, ...) up to ``length`` frames."""
    missing = length - frames.shape[0]
    if missing <= 0:
        return frames
    return torch.cat([frames, frames[-1:].expand(missing, *frames.shape[1:])])
