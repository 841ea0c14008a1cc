"""Spatial tiling with linear blending, to bound the memory of encoding and decoding large frames.

The frame is cut into overlapping tiles on the latent grid; each tile is encoded or decoded on its
own and the outputs are blended with weights that ramp linearly across each overlap (zero padding
at tile borders makes tiles differ near their edges; the ramps hide the seams). With one tile
covering the frame, the result is exactly the untiled one.

Dimension key: ``b`` batch, ``c`` channels, ``t`` frames, ``h w`` rows and columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from seedvr2.errors import InputError

Span = tuple[int, int]  # [start, stop) along one axis


@dataclass(frozen=True)
class TileSpec:
    """Spatial tiles for :meth:`VideoAutoencoder.encode` / ``decode``, in video pixels.

    Sizes are (height, width), multiples of the VAE's spatial factor (8); an int means a square.
    For decoding, the sizes refer to the decoded video (latent tiles are 1/8 of them).
    """

    size: tuple[int, int] = (512, 512)  # tile height and width
    overlap: tuple[int, int] = (64, 64)  # rows / columns shared by neighbouring tiles

    def __post_init__(self) -> None:
        for name in ("size", "overlap"):
            value = getattr(self, name)
            pair = (value, value) if isinstance(value, int) else tuple(value)
            if len(pair) != 2:
                raise InputError(f"tile {name} must be an int or (height, width), got {value!r}")
            object.__setattr__(self, name, pair)
        for size, overlap in zip(self.size, self.overlap):
            if size <= 0 or not 0 <= overlap < size:
                raise InputError(
                    f"tile size {self.size} must be positive and overlap {self.overlap} within "
                    "[0, size)"
                )

    def in_cells(self, factor: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(size, overlap) in latent cells of ``factor`` pixels each."""
        if any(v % factor for v in (*self.size, *self.overlap)):
            raise InputError(
                f"tile size {self.size} and overlap {self.overlap} must be multiples of {factor}"
            )
        return (
            (self.size[0] // factor, self.size[1] // factor),
            (self.overlap[0] // factor, self.overlap[1] // factor),
        )


def tile_spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Tiles of ``tile`` cells covering ``length``, overlapping by at least ``overlap``."""
    if length <= tile:
        return [(0, length)]
    starts = [*range(0, length - tile, tile - overlap), length - tile]
    return [(start, start + tile) for start in starts]


def blend_weights(spans: list[Span], scale: int, device: torch.device) -> list[torch.Tensor]:
    """Per-span 1-D weights at ``scale`` output units per cell, ramping across actual overlaps."""
    weights = []
    for i, (start, stop) in enumerate(spans):
        w = torch.ones((stop - start) * scale, device=device)
        lead = (spans[i - 1][1] - start) * scale if i > 0 else 0
        trail = (stop - spans[i + 1][0]) * scale if i + 1 < len(spans) else 0
        if lead > 0:
            w[:lead] *= torch.arange(1, lead + 1, device=device) / (lead + 1)
        if trail > 0:
            w[-trail:] *= torch.arange(trail, 0, -1, device=device) / (trail + 1)
        weights.append(w)
    return weights


def tiled_map(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,  # (b, c, t, h * in_scale, w * in_scale) on a grid of h x w latent cells
    tile: tuple[int, int],  # tile size in cells
    overlap: tuple[int, int],  # overlap in cells
    in_scale: int,  # input units per cell (8 when encoding pixels, 1 when decoding latents)
    out_scale: int,  # output units per cell (1 when encoding, 8 when decoding)
) -> torch.Tensor:  # (b, c', t', h * out_scale, w * out_scale)
    """Apply ``fn`` tile by tile and blend the outputs; ``fn`` itself if one tile covers ``x``."""
    grid = (x.shape[-2] // in_scale, x.shape[-1] // in_scale)
    rows, cols = (tile_spans(grid[a], tile[a], overlap[a]) for a in range(2))
    if len(rows) == len(cols) == 1:
        return fn(x)
    row_w, col_w = (blend_weights(spans, out_scale, x.device) for spans in (rows, cols))
    out = total = None
    for (r0, r1), wr in zip(rows, row_w):
        for (c0, c1), wc in zip(cols, col_w):
            y = fn(x[..., r0 * in_scale : r1 * in_scale, c0 * in_scale : c1 * in_scale])
            if out is None:
                out = y.new_zeros(*y.shape[:-2], grid[0] * out_scale, grid[1] * out_scale)
                total = torch.zeros(out.shape[-2:], device=x.device)
            rs, cs = slice(r0 * out_scale, r1 * out_scale), slice(c0 * out_scale, c1 * out_scale)
            w = wr[:, None] * wc[None, :]  # (h_tile, w_tile)
            out[..., rs, cs].addcmul_(y, w.to(y.dtype))
            total[rs, cs] += w
    return out.div_(total.to(out.dtype))
