"""Sequence parallelism: the video tokens of one DiT call split across processes (spec §7).

Every process (rank) holds all the weights and the whole text stream. The video tokens are split
by *window*: a window's attention needs no other window, so rank r keeps the rows of its share of
the windows of the current partition (regular or shifted), in ascending packed order, and runs
every per-token layer (norms, modulation, projections, RoPE, MLP) and its windows' attention
alone. Tokens move only where the partition changes:

* before a block whose partition differs from the previous block's, one all-to-all sends each
  row to the rank owning its new window (windows are dealt in packed order, so most rows stay);
* a block's text attention output is a sum over its clip's windows: each rank sums its own
  windows, an all-reduce adds the ranks' sums (only the summation order differs from one rank);
* the output head's rows are all-gathered back into packed order.

Dimension key: ``l`` packed video rows of the batch, ``l_r`` rows held by one rank, ``d`` width,
``g`` windows in a group, ``b`` clips.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .attention import WindowGroup, WindowPlan


@dataclass(frozen=True)
class Shard:
    """What one rank holds under one window partition."""

    rows: torch.Tensor  # (l_r,) packed video rows, ascending
    lengths: torch.Tensor  # (b,) of those rows per clip
    plan: WindowPlan  # the rank's windows, indexing positions in ``rows``


def deal_windows(plan: WindowPlan, ranks: int) -> list[list[torch.Tensor]]:
    """Per rank, per group of ``plan``: a (g,) mask of the windows the rank attends over.

    Windows are ordered by their first packed row and cut into ``ranks`` runs of about equal
    token counts, so a rank holds a contiguous stretch of each clip (mostly the same rows under
    the regular and the shifted partition).
    """
    firsts = torch.cat([group.vid_index[:, 0].cpu() for group in plan.groups])
    sizes = torch.cat([
        torch.full((len(group.vid_index),), group.vid_index.shape[1]) for group in plan.groups
    ])
    order = firsts.argsort()
    before = sizes[order].cumsum(0) - sizes[order]  # tokens of the windows dealt earlier
    rank_of = torch.empty_like(order)
    rank_of[order] = (before * ranks // max(int(sizes.sum()), 1)).clamp(max=ranks - 1)
    per_group = rank_of.split([len(group.vid_index) for group in plan.groups])
    return [[owner == rank for owner in per_group] for rank in range(ranks)]


def _local_group(group: WindowGroup, keep: torch.Tensor, position: torch.Tensor, rows: int) -> WindowGroup:
    """``group`` restricted to the ``keep`` windows, video rows renumbered by ``position``."""
    keep = keep.to(group.vid_index.device)
    vid_index = position[group.vid_index[keep]]  # (g', t*h*w) local positions
    txt_index = group.txt_index[keep]
    kept_before = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.long().cumsum(0)]).tolist()
    spans = tuple(
        (t0, t1, kept_before[w0], kept_before[w1])
        for t0, t1, w0, w1 in group.txt_clips
        if kept_before[w1] > kept_before[w0]
    )
    seg_index = torch.cat([vid_index, txt_index + rows], dim=1)  # text after the rank's video
    return WindowGroup(group.shape, group.text_len, vid_index, txt_index, seg_index, spans)


def shard_plan(
    plan: WindowPlan,
    vid_lengths: torch.Tensor,  # (b,) packed rows per clip
    ranks: int,
    group: dist.ProcessGroup | None = None,
) -> list[Shard]:
    """Every rank's :class:`Shard` of ``plan`` (all ranks compute all of them, identically)."""
    total = int(vid_lengths.sum())
    device = plan.windows_per_txt_row.device
    clip_of_row = torch.repeat_interleave(
        torch.arange(len(vid_lengths), device=device), vid_lengths.to(device)
    )  # (l,)
    shards = []
    for masks in deal_windows(plan, ranks):
        owned = [g.vid_index[m.to(g.vid_index.device)].reshape(-1) for g, m in zip(plan.groups, masks)]
        rows = torch.cat(owned).sort().values
        position = torch.full((total,), -1, dtype=torch.long, device=device)
        position[rows] = torch.arange(len(rows), device=device)
        groups = tuple(
            _local_group(g, m, position, len(rows))
            for g, m in zip(plan.groups, masks)
            if bool(m.any())
        )
        local = WindowPlan(groups, plan.windows_per_txt_row, text_sum=lambda x: _all_sum(x, group))
        lengths = torch.bincount(clip_of_row[rows], minlength=len(vid_lengths))
        shards.append(Shard(rows, lengths, local))
    return shards


def _all_sum(x: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Sum of ``x`` over the ranks of ``group`` (the text attention outputs)."""
    dist.all_reduce(x, group=group)
    return x


@dataclass(frozen=True)
class Exchange:
    """How rows move from one partition's shards to another's, seen from one rank."""

    send_order: torch.Tensor  # (l_r,) local rows (old layout) in the order they are sent
    send_counts: list[int]  # rows sent to each rank
    recv_counts: list[int]  # rows received from each rank
    recv_positions: torch.Tensor  # (l_r',) where the received rows go in the new layout

    @classmethod
    def between(cls, old: list[torch.Tensor], new: list[torch.Tensor], rank: int) -> Exchange:
        """From rows held per rank ``old`` to ``new`` (each (l_r,), ascending), for ``rank``."""
        total = sum(len(rows) for rows in old)
        device = old[rank].device
        owner = torch.empty(total, dtype=torch.long, device=device)  # new rank of each row
        position = torch.empty(total, dtype=torch.long, device=device)  # its place there
        for r, rows in enumerate(new):
            owner[rows] = r
            position[rows] = torch.arange(len(rows), device=device)
        destination = owner[old[rank]]
        send_order = destination.argsort(stable=True)  # by rank, ascending rows within each
        send_counts = torch.bincount(destination, minlength=len(new)).tolist()
        incoming = [rows[owner[rows] == rank] for rows in old]  # ascending, as each peer sends
        return cls(
            send_order,
            send_counts,
            [len(rows) for rows in incoming],
            position[torch.cat(incoming)],
        )

    def place(self, received: torch.Tensor) -> torch.Tensor:  # (l_r', d), by sender -> by row
        """The received rows in the new layout."""
        out = torch.empty_like(received)
        out[self.recv_positions] = received
        return out

    def __call__(self, x: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        """(l_r, d) rows in the old layout -> (l_r', d) rows in the new one."""
        received = x.new_empty(sum(self.recv_counts), *x.shape[1:])
        dist.all_to_all_single(
            received, x[self.send_order], self.recv_counts, self.send_counts, group=group
        )
        return self.place(received)


class TokenSharding:
    """One DiT call's split of the video rows: follows the blocks' partitions and gathers."""

    def __init__(self, plans: dict[bool, WindowPlan], vid_lengths: torch.Tensor,
                 group: dist.ProcessGroup | None) -> None:  # fmt: skip
        self.group = group
        self.rank, ranks = dist.get_rank(group), dist.get_world_size(group)
        self.total = int(vid_lengths.sum())
        self.shards = {
            shifted: shard_plan(plan, vid_lengths.cpu(), ranks, group)
            for shifted, plan in plans.items()
        }
        self.local_plans = {shifted: s[self.rank].plan for shifted, s in self.shards.items()}
        self.current: bool | None = None  # partition of the rows held now; None = all rows
        self._exchanges: dict[bool, Exchange] = {}  # by the partition moved to

    def enter(self, state, shifted: bool):  # TokenState -> TokenState
        """``state`` with the rows and lengths a block of partition ``shifted`` needs."""
        if self.current == shifted:
            return state
        shard = self.shards[shifted][self.rank]
        if self.current is None:
            vid = state.vid[shard.rows.to(state.vid.device)]
        else:
            if shifted not in self._exchanges:
                self._exchanges[shifted] = Exchange.between(
                    [s.rows for s in self.shards[self.current]],
                    [s.rows for s in self.shards[shifted]],
                    self.rank,
                )
            vid = self._exchanges[shifted](state.vid, self.group)
        self.current = shifted
        return dataclasses.replace(
            state, vid=vid, vid_lengths=shard.lengths.to(vid.device), plans=self.local_plans
        )

    def gather(self, x: torch.Tensor) -> torch.Tensor:  # (l_r, c) -> (l, c)
        """Every rank's rows, back in packed order, on every rank."""
        shards = self.shards[self.current]
        longest = max(len(s.rows) for s in shards)
        padded = x.new_zeros(longest, *x.shape[1:])
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in shards]
        dist.all_gather(parts, padded, group=self.group)
        out = x.new_empty(self.total, *x.shape[1:])
        for shard, part in zip(shards, parts):
            out[shard.rows.to(x.device)] = part[: len(shard.rows)]
        return out


@dataclass(frozen=True)
class SequenceParallel:
    """Split the DiT's video tokens over the ranks of ``group`` (None: the default group)."""

    group: dist.ProcessGroup | None = None

    def shard(self, plans: dict[bool, WindowPlan], vid_lengths: torch.Tensor) -> TokenSharding:
        return TokenSharding(plans, vid_lengths, self.group)
