"""Sequence parallelism for the causal VAE: a clip's temporal chunks split across processes.

The chunks of the causal slicing (``temporal_chunk``) are dealt to the ranks in contiguous runs:
rank r encodes or decodes its run with a :class:`HandoffCache`, which starts from the tails the
previous rank's last chunk keeps and sends its own last chunk's tails to the next rank, conv by
conv. So rank r + 1 starts a conv as soon as rank r has finished that conv on its last chunk (a
pipeline, not a queue), each rank holds the activations of its own chunks only, and the result
is the one-process result (the same chunks, the same carried frames). The outputs are then
all-gathered along time. Spatial tiles stay whole: each tile runs its chunks this way.

Dimension key: ``b`` batch, ``c`` channels, ``t`` frames, ``h w`` rows and columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .causal import CausalCache, ChunkPhase, run_in_chunks


def _global(group: dist.ProcessGroup | None, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


class HandoffCache(CausalCache):
    """A :class:`CausalCache` continued from the previous rank and handed to the next one."""

    def __init__(self, rank: int, ranks: int, group: dist.ProcessGroup | None) -> None:
        super().__init__()
        self.previous = _global(group, rank - 1) if rank > 0 else None
        self.following = _global(group, rank + 1) if rank + 1 < ranks else None
        self.group = group
        self.phase = ChunkPhase.FIRST if self.previous is None else ChunkPhase.LATER
        self.last_chunk = False  # set while the rank runs its last chunk: tails go to `following`
        self.sends: list[dist.Work] = []

    def continue_from(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if conv in self._tails or self.previous is None:
            return super().continue_from(conv, x)
        tail = x.new_empty(*x.shape[:2], conv.tail_frames, *x.shape[3:])  # (b, c, k, h, w)
        dist.recv(tail, self.previous, group=self.group)
        return tail

    def keep(self, conv: nn.Module, frames: torch.Tensor) -> None:
        super().keep(conv, frames)
        if self.last_chunk and self.following is not None:
            self.sends.append(dist.isend(self._tails[conv], self.following, group=self.group))


def deal_chunks(count: int, ranks: int) -> list[range]:
    """Contiguous runs of ``count`` chunks per rank, the first ranks taking the extra ones."""
    base, extra = divmod(count, ranks)
    starts = [r * base + min(r, extra) for r in range(ranks + 1)]
    return [range(starts[r], starts[r + 1]) for r in range(ranks)]


@dataclass(frozen=True)
class TimeSplit:
    """Split a clip's temporal chunks over the ranks of ``group`` (None: the default group)."""

    group: dist.ProcessGroup | None = None

    def run(
        self,
        step: Callable[[torch.Tensor, CausalCache], torch.Tensor],
        chunks: Sequence[torch.Tensor],  # each (b, c, t_i, h, w), consecutive in time
    ) -> torch.Tensor:  # (b, c', sum of t_i', h', w'), on every rank
        """``run_in_chunks(step, chunks)`` with each rank running its run of chunks.

        With fewer chunks than ranks, every rank runs them all (the same numbers everywhere).
        """
        rank, ranks = dist.get_rank(self.group), dist.get_world_size(self.group)
        if len(chunks) < ranks:
            return run_in_chunks(step, chunks)
        mine = deal_chunks(len(chunks), ranks)[rank]
        cache = HandoffCache(rank, ranks, self.group)
        outputs = []
        for index in mine:
            cache.last_chunk = index == mine[-1]
            outputs.append(step(chunks[index], cache))
            cache.phase = ChunkPhase.LATER
        for send in cache.sends:
            send.wait()
        return self._gather(torch.cat(outputs, dim=2))

    def _gather(self, local: torch.Tensor) -> torch.Tensor:  # (b, c, t_r, h, w) -> (b, c, t, h, w)
        """Every rank's frames, in rank order, on every rank."""
        ranks = dist.get_world_size(self.group)
        counts = [torch.zeros(1, dtype=torch.long) for _ in range(ranks)]
        dist.all_gather(counts, torch.tensor([local.shape[2]]), group=self.group)
        longest = max(int(c) for c in counts)
        padded = local.new_zeros(*local.shape[:2], longest, *local.shape[3:])
        padded[:, :, : local.shape[2]] = local
        parts = [torch.empty_like(padded) for _ in range(ranks)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[:, :, : int(c)] for p, c in zip(parts, counts)], dim=2)
