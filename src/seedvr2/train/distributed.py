"""Process group, device choice and model wrapping (DDP or FSDP2) for ``torchrun`` launches.

FSDP2 (``fully_shard``) shards each DiT block and then the root, so the generator, the
discriminator and the EMA copy are all sharded; full state dicts are gathered on rank 0 for
checkpoints, which keeps checkpoints independent of the number of processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from seedvr2.errors import ConfigError
from seedvr2.pipeline.distributed import init_group

from .config import RunConfig


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run."""

    rank: int
    world_size: int
    device: torch.device
    parallel: str  # "none" | "ddp" | "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.parallel != "none"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("run.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(run: RunConfig) -> DistContext:
    """Join the ``torchrun`` process group (or make a one-process one) as ``run.parallel`` says.

    NCCL on CUDA, gloo on the CPU. Without torchrun's environment, DDP/FSDP start a group of one.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if run.parallel == "none":
        if world_size > 1:
            raise ConfigError(
                f"run.parallel is 'none' but {world_size} processes were launched; set ddp or fsdp"
            )
        return DistContext(0, 1, _device(run.device, 0), "none")
    device = _device(run.device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if "RANK" in os.environ:
            init_group(backend, device_id=device if device.type == "cuda" else None)
        else:
            init_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                       world_size=1)
    return DistContext(dist.get_rank(), dist.get_world_size(), device, run.parallel)


def shutdown(ctx: DistContext, finished: bool = True) -> None:
    """Leave the process group (if this run made one). After a finished run all ranks leave
    together; after a failure nobody waits. A rank's process then ends with
    :func:`seedvr2.pipeline.distributed.exit_rank` (the command line does)."""
    if ctx.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: DistContext, trainable: bool = True) -> nn.Module:
    """DDP for trained modules, FSDP2 for all (frozen ones too), untouched otherwise."""
    if ctx.parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
        for name, child in module.named_modules():
            if re.fullmatch(r"(.*\.)?blocks\.\d+", name):  # DiT blocks, also inside D's backbone
                fully_shard(child, mesh=mesh)
        fully_shard(module, mesh=mesh)
        return module
    if ctx.parallel == "ddp" and trainable:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)
    return module


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 modules are their own)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
    if isinstance(module, DistributedDataParallel) and not enabled:
        with module.no_sync():
            yield
        return
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(enabled)
    yield


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's global value (clip_grad_norm_ under FSDP2 returns one), else the tensor."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average logged scalars over processes (a no-op in one process)."""
    if ctx.world_size == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(stacked)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, stacked.tolist())}


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on at least one (so all ranks skip together)."""
    if ctx.world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """One picklable object per rank, on every rank."""
    if ctx.world_size == 1:
        return [obj]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()
