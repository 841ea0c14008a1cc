"""Sample videos/images written during training: ``LQ | output | HQ`` side by side, clips stacked.

Dimension key: ``b`` clips, ``c`` channels, ``f`` frames, ``h w`` pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from seedvr2.media import MediaWriter

PREVIEW_FPS = 8


def preview_grid(
    lq: torch.Tensor | None,  # (b, c, f, h, w) in [-1, 1]; None: black (VAE stage)
    output: torch.Tensor,  # (b, c, f, h, w)
    hq: torch.Tensor,  # (b, c, f, h, w)
) -> np.ndarray:  # (f, b h, 3 w, c) float32 in [0, 1]
    """Rows of ``[LQ | output | HQ]`` per clip."""
    parts = [torch.zeros_like(hq) if lq is None else lq, output, hq]
    grid = torch.cat([p.float().cpu() for p in parts], dim=-1)  # (b, c, f, h, 3w)
    grid = rearrange(grid, "b c f h w -> f (b h) w c")
    return ((grid.clamp(-1, 1) + 1) / 2).numpy()


def write_preview(
    folder: Path, step: int, lq: torch.Tensor | None, output: torch.Tensor, hq: torch.Tensor
) -> Path:
    """Write ``step_{step}.png`` (single frames) or ``.mp4`` (clips) and return its path."""
    frames = preview_grid(lq, output, hq)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.{'png' if len(frames) == 1 else 'mp4'}"
    with MediaWriter(path, fps=PREVIEW_FPS, overwrite=True) as writer:
        for frame in frames:
            writer.write(frame)
    return path
