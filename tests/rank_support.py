"""Run a function in several gloo processes on the CPU (sequence-parallel tests)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seedvr2.pipeline.distributed import exit_rank


def _entry(rank: int, fn: Callable, world: int, store: str, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()
    exit_rank(0)  # as the seedvr2 command: no interpreter finalization while gloo may still work


def run_ranks(fn: Callable, world: int, *args) -> None:
    """``fn(rank, *args)`` in ``world`` spawned processes joined in one gloo group."""
    with tempfile.TemporaryDirectory(prefix="seedvr2-ranks-") as folder:
        store = os.path.join(folder, "store")
        mp.spawn(_entry, args=(fn, world, store, args), nprocs=world, join=True)
