"""Joint video-text attention over packed, variable-length windows (spec §1.5.1, §3).

One attention *segment* per (clip, window): the window's video tokens followed by all of that
clip's text tokens. Windows of one shape (and text length) form a *group* that runs as one batched
call, so there is no Python loop per window: a 720p clip has 36 to 80 windows but at most a dozen
shapes. Backends give the same numbers:

* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` per group (default);
* ``flash``: ``flash_attn_varlen_func`` over all groups at once (CUDA, fp16/bf16, when installed);
* ``loop``: one plain softmax attention per window, the reference for tests.

Dimension key: ``g`` windows in a group, ``s`` segment length, ``l`` tokens, ``n`` heads,
``k`` head dim.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from .windows import window_partition

Backend = Literal["auto", "sdpa", "flash", "loop"]


@dataclass(frozen=True)
class WindowGroup:
    """Windows of one shape and text length, gathered for one batched attention call."""

    shape: tuple[int, int, int]  # window (t, h, w) in tokens
    text_len: int
    vid_index: torch.Tensor  # (g, t*h*w) rows of the packed video tokens, row-major per window
    txt_index: torch.Tensor  # (g, text_len) rows of the packed text tokens of each window's clip
    seg_index: torch.Tensor  # (g, t*h*w + text_len) rows of [video rows | text rows] per segment
    # Per clip in the group: (text row start, stop, first window, window stop); a clip's windows
    # are consecutive in the group.
    txt_clips: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class WindowPlan:
    """How one window method splits a packed batch into attention segments."""

    groups: tuple[WindowGroup, ...]
    windows_per_txt_row: torch.Tensor  # (l_txt, 1) windows of the clip each text row belongs to
    # Per-plan values every block reuses (e.g. RoPE factors per video row), filled on first use.
    cache: dict = field(default_factory=dict, compare=False, repr=False)
    # Adds the text outputs (l_txt, n, k) summed over these windows to those of the windows other
    # processes hold (sequence parallel, see sequence_parallel.py); None: the plan has them all.
    text_sum: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)


def build_window_plan(
    grids: list[tuple[int, int, int]],  # patched (t, h, w) per clip
    text_lengths: list[int],
    num_windows: tuple[int, int, int],
    shifted: bool,
    device: torch.device,
) -> WindowPlan:
    """Partition every clip into windows and group windows of equal shape and text length."""
    members: dict[tuple[tuple[int, int, int], int], tuple[list, list]] = {}
    clips: dict[tuple[tuple[int, int, int], int], list[list[int]]] = {}
    counts = []
    vid_offset = txt_offset = 0
    for grid, text_len in zip(grids, text_lengths):
        rows = torch.arange(grid[0] * grid[1] * grid[2]).view(grid) + vid_offset
        txt_rows = torch.arange(txt_offset, txt_offset + text_len)
        windows = window_partition(tuple(grid), tuple(num_windows), shifted)
        for (t0, t1), (h0, h1), (w0, w1) in windows:
            key = ((t1 - t0, h1 - h0, w1 - w0), text_len)
            vid, txt = members.setdefault(key, ([], []))
            spans = clips.setdefault(key, [])
            if not spans or spans[-1][0] != txt_offset:
                spans.append([txt_offset, txt_offset + text_len, len(vid), len(vid)])
            spans[-1][3] += 1
            vid.append(rows[t0:t1, h0:h1, w0:w1].reshape(-1))
            txt.append(txt_rows)
        counts.append(torch.full((text_len,), float(len(windows))))
        vid_offset += rows.numel()
        txt_offset += text_len
    groups = []
    for (shape, text_len), (vid, txt) in members.items():
        vid_index, txt_index = torch.stack(vid), torch.stack(txt)
        seg_index = torch.cat([vid_index, txt_index + vid_offset], dim=1)  # text after all video
        groups.append(WindowGroup(
            shape, text_len, vid_index.to(device), txt_index.to(device), seg_index.to(device),
            tuple(tuple(span) for span in clips[(shape, text_len)]),
        ))
    groups = tuple(groups)
    return WindowPlan(groups, torch.cat(counts)[:, None].to(device))


def flash_available(q: torch.Tensor) -> bool:
    """flash-attn varlen applies: CUDA tensor in fp16/bf16 and the package installed."""
    return (
        q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and importlib.util.find_spec("flash_attn") is not None
    )


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(g, s, n, k) attention with SDPA (heads moved to dim 1 and back)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference: one explicit softmax attention per window."""
    outs = []
    for qi, ki, vi in zip(q, k, v):  # (s, n, k)
        scores = torch.einsum("qnk,snk->nqs", qi, ki) * qi.shape[-1] ** -0.5
        outs.append(torch.einsum("nqs,snk->qnk", scores.softmax(-1), vi))
    return torch.stack(outs)


def _flash(
    segments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> list[torch.Tensor]:
    """All groups in one ``flash_attn_varlen_func`` call."""
    from flash_attn import flash_attn_varlen_func

    def packed(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        lengths = torch.cat([torch.full((x.shape[0],), x.shape[1]) for x in tensors])
        cu = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32).to(tensors[0].device)
        return torch.cat([x.flatten(0, 1) for x in tensors]), cu, int(lengths.max())

    q, cu_q, max_q = packed([s[0] for s in segments])
    k, cu_k, max_k = packed([s[1] for s in segments])
    v, _, _ = packed([s[2] for s in segments])
    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k)
    sizes = [s[0].shape[0] * s[0].shape[1] for s in segments]
    return [o.unflatten(0, s[0].shape[:2]) for o, s in zip(out.split(sizes), segments)]


def grouped_attention(
    segments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],  # (q, k, v), each (g, s, n, k)
    backend: Backend = "auto",
) -> list[torch.Tensor]:  # (g, s_q, n, k) per group
    """Softmax attention (scale 1/sqrt(k)) inside each segment of each group."""
    if not segments:
        return []
    if backend == "auto":
        backend = "flash" if flash_available(segments[0][0]) else "sdpa"
    if backend == "flash":
        return _flash(segments)
    if backend not in ("sdpa", "loop"):
        raise ValueError(f"unknown attention backend {backend!r}; use auto, sdpa, flash or loop")
    attend = _sdpa if backend == "sdpa" else _loop
    return [attend(q, k, v) for q, k, v in segments]
