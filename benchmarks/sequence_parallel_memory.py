"""Peak memory of each process restoring one batch, alone or with ``--sequence-parallel``.

Run alone for N = 1 and under torchrun for N > 1; every rank reports its peak resident memory
(CPU) or peak allocated memory (CUDA), and rank 0 prints one table row:

    python benchmarks/sequence_parallel_memory.py --size 256x256 --scale 2 --frames 21
    torchrun --standalone --nproc-per-node 2 benchmarks/sequence_parallel_memory.py \\
        --size 256x256 --scale 2 --frames 21
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from common import device_peak_mib, markdown_table, peak_rss_mib, reset_peak  # noqa: E402
from seedvr2.pipeline import Restorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x256", help="input WIDTHxHEIGHT")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=21, help="one batch of this many frames")
    parser.add_argument("--model", default=None, help="default: the bundled model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    parallel = "WORLD_SIZE" in os.environ
    restorer = Restorer.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, scale=args.scale,
        batch_size=args.frames, sequence_parallel=parallel,
    )  # fmt: skip
    reset_peak(restorer.device)
    start = time.perf_counter()
    if restorer.team is not None and not restorer.team.leads:
        restorer.follow()
    else:
        frames = np.random.default_rng(0).random((args.frames, height, width, 3), np.float32)
        out = restorer.restore(frames)
        if restorer.team is not None:
            restorer.team.finish()
    seconds = time.perf_counter() - start
    peak = (peak_rss_mib(), device_peak_mib(restorer.device))
    peaks = [peak]
    if parallel:
        peaks = [None] * dist.get_world_size()
        dist.all_gather_object(peaks, peak)
    if restorer.team is None or restorer.team.leads:
        rss = " / ".join(f"{p[0]:.0f}" for p in peaks)
        device = " / ".join("-" if p[1] is None else f"{p[1]:.0f}" for p in peaks)
        print(markdown_table(
            ["processes", "output", "frames", "seconds", "peak RSS MiB per rank", "device peak MiB"],
            [[len(peaks), f"{out.shape[2]}x{out.shape[1]}", args.frames, f"{seconds:.1f}", rss,
              device]],
        ))  # fmt: skip


if __name__ == "__main__":
    main()
