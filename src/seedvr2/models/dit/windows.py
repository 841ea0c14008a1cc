"""Adaptive window partitions of the patched token grid (paper eq. 1-2, spec §3).

The window *count* (nt, nh, nw) is fixed at a 720p proxy resolution (45 x 80 tokens); the window
*size* follows from it, so every frame holds about nh x nw windows whatever its resolution. Even
blocks use the regular partition, odd blocks the half-window shifted one.
"""

from __future__ import annotations

import math
from functools import lru_cache

Span = tuple[int, int]  # [start, stop) on one axis
Window = tuple[Span, Span, Span]  # (t, h, w) spans

PROXY_TOKENS = 45 * 80  # 720 x 1280 pixels / (8 VAE x 2 patch)^2
MAX_WINDOW_FRAMES = 30  # temporal extent over which the temporal window count applies


def window_size(
    grid: tuple[int, int, int], num_windows: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Window size (wt, wh, ww) in tokens for a patched grid (t, h, w), eq. 1-2.

    The frame is scaled to the 720p proxy area (Python ``round``, half to even, as the official
    code), then split into ``num_windows`` parts per axis, rounding the size up.
    """
    t, h, w = grid
    nt, nh, nw = num_windows
    scale = math.sqrt(PROXY_TOKENS / (h * w))
    proxy_h, proxy_w = round(h * scale), round(w * scale)
    return (
        math.ceil(min(t, MAX_WINDOW_FRAMES) / nt),
        math.ceil(proxy_h / nh),
        math.ceil(proxy_w / nw),
    )


def _regular_spans(size: int, win: int) -> list[Span]:
    return [(k * win, min((k + 1) * win, size)) for k in range(math.ceil(size / win))]


def _shifted_spans(size: int, win: int) -> list[Span]:
    """Half-window shifted spans; ``int`` truncation as the official code, empty spans dropped."""
    if win >= size:
        return [(0, size)]
    spans = [
        (max(int((k - 0.5) * win), 0), min(int((k + 0.5) * win), size))
        for k in range(math.ceil(size / win) + 1)
    ]
    return [(a, b) for a, b in spans if a < b]


@lru_cache(maxsize=256)
def window_partition(
    grid: tuple[int, int, int], num_windows: tuple[int, int, int], shifted: bool
) -> tuple[Window, ...]:
    """Windows covering the grid (t, h, w), ordered w-outer, then h, then t (official order)."""
    sizes = window_size(grid, num_windows)
    spans = _shifted_spans if shifted else _regular_spans
    t_spans, h_spans, w_spans = (spans(n, win) for n, win in zip(grid, sizes))
    return tuple((ts, hs, ws) for ws in w_spans for hs in h_spans for ts in t_spans)
