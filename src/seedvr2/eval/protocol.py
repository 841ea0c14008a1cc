"""The synthetic benchmark protocol: ground truth -> low-quality input (paper §4.1).

SeedVR2's synthetic benchmarks (SPMCS, UDM10, REDS30, YouHQ40) degrade the ground truth with the
training pipeline. Here: crop the GT to a multiple of ``scale``, then either

* ``degradation=None``: bicubic (antialiased) down-scaling by ``scale``, quantised to 8 bits, or
* a degradation YAML (``configs/degradations/realesrgan_video.yaml``): the second-order
  Real-ESRGAN/RealBasicVSR video pipeline of :mod:`seedvr2.train.degrade` with its ``scale``
  replaced by ``scale``.

Every random draw comes from a generator seeded by ``(seed, clip name)`` (SHA-256), so one clip's
LQ does not depend on which other clips are evaluated or in which order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from seedvr2.errors import InputError
from seedvr2.train.degrade import degrade_video, load_degradation_config


def clip_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one clip, from the run seed and the clip's name."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def crop_to_multiple(frames: np.ndarray, multiple: int) -> np.ndarray:
    """Crop (f, h, w, c) frames at the bottom/right to sizes divisible by ``multiple``."""
    h, w = frames.shape[1] // multiple * multiple, frames.shape[2] // multiple * multiple
    if h == 0 or w == 0:
        raise InputError(f"frames of {frames.shape[1]}x{frames.shape[2]} are smaller than x{multiple}")
    return frames[:, :h, :w]


def bicubic_down(frames: np.ndarray, scale: int) -> np.ndarray:
    """(f, h, w, 3) -> (f, h/scale, w/scale, 3): antialiased bicubic, on 8-bit levels."""
    x = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "f h w c -> f c h w")
    size = (frames.shape[1] // scale, frames.shape[2] // scale)
    small = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    small = torch.round(small.clamp(0, 1) * 255) / 255
    return rearrange(small, "f c h w -> f h w c").numpy().astype(np.float32)


def synthesize_lq(
    gt: np.ndarray,  # (f, h, w, 3) float32 [0, 1], h and w divisible by scale
    scale: int,
    degradation: str | Path | None,
    seed: int,
) -> np.ndarray:  # (f, h / scale, w / scale, 3) float32 [0, 1]
    """The low-quality input of one ground-truth clip (deterministic for ``seed``)."""
    if gt.shape[1] % scale or gt.shape[2] % scale:
        raise InputError(f"GT size {gt.shape[1]}x{gt.shape[2]} is not divisible by x{scale}")
    if degradation is None:
        return bicubic_down(gt, scale)
    config = dataclasses.replace(load_degradation_config(degradation), scale=scale)
    clip = rearrange(torch.from_numpy(np.ascontiguousarray(gt)), "f h w c -> f c h w")
    lq = degrade_video(clip, config, torch.Generator().manual_seed(seed))
    return rearrange(lq, "f c h w -> f h w c").numpy().astype(np.float32)
