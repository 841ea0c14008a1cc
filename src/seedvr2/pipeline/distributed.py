"""The processes of a sequence-parallel run under torchrun: joining, lockstep batches, failures.

Rank 0 runs the jobs as one process would: it alone reads inputs and writes outputs, resume
segments and reports. Before each batch it broadcasts the batch's frames and settings; the other
ranks wait for them in :meth:`Team.follow` and restore the same batch with it, every DiT call and
VAE pass split across all ranks (``models.dit.sequence_parallel``, ``models.vae.sequence_parallel``).
A rank that stops makes the others' next collective fail (or torchrun sends them SIGTERM): they
raise :class:`~seedvr2.errors.RankLost`, a one-line error, and the finished segments stay for
the rerun to resume from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist

from seedvr2.errors import InputError, RankLost

from .runtime import resolve_device
from .sizing import SizePlan

log = logging.getLogger(__name__)
TIMEOUT = timedelta(minutes=30)  # a collective waiting longer than this fails (a hung rank)
TORCHRUN = "torchrun --standalone --nproc-per-node N -m seedvr2 restore ... --sequence-parallel"


@dataclass(frozen=True)
class Team:
    """This process's place in the run."""

    rank: int
    size: int
    device: torch.device

    @property
    def leads(self) -> bool:
        """Whether this rank reads the inputs and writes the outputs."""
        return self.rank == 0

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Turn a failed collective (a peer stopped) into :class:`RankLost`."""
        try:
            yield
        except RuntimeError as error:
            if isinstance(error, RankLost) or not _peer_failure(error):
                raise
            log.info("collective failed: %s", error)
            raise self.lost("its connection closed") from None

    def lost(self, why: str) -> RankLost:
        """The error that stops this rank; from now on torchrun's SIGTERM (sent once a peer
        failed) is ignored, so that it cannot cut the one error message or the exit short."""
        with contextlib.suppress(ValueError):  # not the main thread: the handler stays
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return RankLost(
            f"rank {self.rank} of {self.size}: another process of the run stopped ({why}); "
            "finished segments are kept: run the same command to resume"
        )

    def announce(self, frames: torch.Tensor, plan: SizePlan, seed: int) -> None:
        """Rank 0: send the next batch, ``frames`` (f, 3, h, w), to the other ranks."""
        with self.guard():
            dist.broadcast_object_list([(tuple(frames.shape), plan, seed)], src=0)
            dist.broadcast(frames.contiguous().cpu(), src=0)

    def finish(self) -> None:
        """Rank 0: tell the other ranks that no batch follows."""
        with self.guard():
            dist.broadcast_object_list([None], src=0)

    def close(self) -> None:
        """Leave the process group once the run ended well. The barrier first: rank 0's last
        broadcast may still be on its way when it gets here. End the process with
        :func:`exit_rank` (the command line does)."""
        with self.guard():
            dist.barrier()
        dist.destroy_process_group()

    def follow(self, restore: Callable[[torch.Tensor, SizePlan, int], object]) -> None:
        """Other ranks: ``restore(frames, plan, seed)`` every batch rank 0 announces, until done."""
        while True:
            with self.guard():
                message = [None]
                dist.broadcast_object_list(message, src=0)
                if message[0] is None:
                    return
                shape, plan, seed = message[0]
                frames = torch.empty(shape)
                dist.broadcast(frames, src=0)
            restore(frames, plan, seed)


def _peer_failure(error: RuntimeError) -> bool:
    text = str(error)
    return any(sign in text for sign in ("Connection closed by peer", "Connection reset",
                                         "Broken pipe", "NCCL", "timed out", "Timed out"))


_used_a_group = False  # set once this process makes or joins a process group


def init_group(backend: str, **settings: object) -> None:
    """``torch.distributed.init_process_group``, remembered by :func:`used_a_group`."""
    global _used_a_group
    dist.init_process_group(backend, **settings)
    _used_a_group = True


def used_a_group() -> bool:
    """Whether this process made or joined a process group: end it with :func:`exit_rank`."""
    return _used_a_group


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a ``torchrun`` launch."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def refuse_unsplit_launch(sequence_parallel: bool) -> None:
    """Raises :class:`InputError` for several torchrun processes without ``--sequence-parallel``:
    each would restore every input and write the same outputs."""
    ranks = int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1
    if ranks > 1 and not sequence_parallel:
        raise InputError(
            f"torchrun started {ranks} processes, and each would restore the same inputs into the "
            "same outputs: add --sequence-parallel to split each clip over them, or run seedvr2 "
            "without torchrun"
        )


def exit_rank(code: int) -> NoReturn:
    """End a process that used a process group, skipping the interpreter's finalization.

    gloo's worker thread releases a collective's tensors just after the collective returned;
    releasing a tensor that Python also holds takes the GIL. If the main thread is finalizing
    the interpreter by then, Python ends the worker thread inside that C++ destructor and the
    process aborts ("terminate called without an active exception", SIGABRT): torchrun then
    reports a run that finished and wrote everything as failed (2 runs in 84 on a busy
    2-core machine). Every output is closed before this is called; logs and the standard
    streams are flushed here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def join(device_name: str) -> Team:
    """Join the process group torchrun started (gloo on the CPU, NCCL on CUDA GPUs).

    Raises:
        InputError: not started by torchrun, or a device that cannot be split per rank.
    """
    if not launched_by_torchrun():
        raise InputError(f"--sequence-parallel runs one clip over several processes: `{TORCHRUN}`")
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise InputError(f"--sequence-parallel runs on CUDA GPUs or the CPU, not {device.type}")
    if not dist.is_initialized():  # else joined already (the CLI joins before the restorer)
        backend = "nccl" if device.type == "cuda" else "gloo"
        init_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    team = Team(dist.get_rank(), dist.get_world_size(), device)

    def stopped(signum: int, frame: object) -> None:
        raise team.lost("torchrun stopped this rank after another failed")

    signal.signal(signal.SIGTERM, stopped)
    return team


@contextlib.contextmanager
def leading(team: Team | None) -> Iterator[None]:
    """Rank 0's part of a run: whatever happens, the other ranks are told when it ends."""
    if team is None:
        yield
        return
    try:
        yield
    except RankLost:
        raise
    except BaseException:
        with contextlib.suppress(RankLost):
            team.finish()
        raise
    team.finish()
    team.close()
