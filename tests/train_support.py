"""Helpers of the training tests: tiny synthetic media and tiny run configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seedvr2.media import MediaWriter

# A 2-layer 3B-structure DiT over a pixel-unshuffle x4 latent (48 channels).
TINY_DIT: dict[str, Any] = {
    "dim": 64, "heads": 1, "head_dim": 64, "num_layers": 2, "mm_layers": 1, "txt_in_dim": 16,
    "rope_dim": 60, "vid_in_channels": 97, "vid_out_channels": 48,
}


def _pattern(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth moving colour waves, (f, h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for f in range(frames):
        channels = []
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2), rng.uniform(0, 6)
            channels.append(np.sin(fx * x + fy * y + phase + 0.3 * f))
        out.append(np.stack(channels, -1))
    return ((np.stack(out) * 0.5 + 0.5) * 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int = 8, gop: int = 250) -> Path:
    """An H.264 file of uint8 (f, h, w, 3) frames with a keyframe every ``gop`` frames."""
    options = {"g": str(gop), "keyint_min": str(gop)}
    with MediaWriter(path, fps=fps, crf=10, encoder_options=options) as writer:
        for frame in frames:
            writer.write(frame.astype(np.float32) / 255)
    return path


def write_image(path: Path, image: np.ndarray) -> Path:
    with MediaWriter(path) as writer:
        writer.write(image.astype(np.float32) / 255)
    return path


def make_media(folder: Path) -> Path:
    """Two short clips and one image under ``folder`` (48x64 and 40x56 pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / "a.mp4", _pattern(12, 48, 64, seed=1))
    write_video(folder / "b.mp4", _pattern(9, 40, 56, seed=2))
    write_image(folder / "c.png", _pattern(1, 48, 48, seed=3)[0])
    return folder


def tiny_config(root: Path, output: Path, stage: str = "diffusion", **sections: Any) -> dict:
    """A run config dict of a few CPU steps on 32x32 crops of 1 and 5 frames."""
    cfg: dict[str, Any] = {
        "stage": stage,
        "output_dir": str(output),
        "seed": 3,
        "model": {"dit": dict(TINY_DIT)},
        "latent": {"kind": "pixel_unshuffle", "factor": 4},
        "text": {"length": 4},
        "data": {"roots": [str(root)], "batch_size": 2, "scale": 2,
                 "phases": [{"frames": [1], "sizes": [32]},
                            {"start_step": 2, "frames": [1, 5], "sizes": [32],
                             "aspect_ratios": [1.0, 1.5]}]},
        "optim": {"lr": 1e-3},
        "run": {"steps": 4, "log_every": 1, "checkpoint_every": 2, "keep_last": 2,
                "ema_decay": 0.9},
        "distill": {"teacher_steps": 4, "round_steps": 2},
        "adversarial": {"head_blocks": [1, 2], "head_heads": 1},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
