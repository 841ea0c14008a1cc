"""Helpers shared by the benchmark scripts: peak-memory measurement and Markdown tables."""

from __future__ import annotations

import resource
import sys
import time

import torch


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def device_peak_mib(device: torch.device) -> float | None:
    """Peak allocated accelerator memory since :func:`reset_peak` (None on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def matmul_rate(
    m: int,
    k: int,
    n: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    repeat: int = 3,
    clock=time.perf_counter,
) -> float:
    """Measured FLOP/s of an (m, k) x (k, n) matrix multiply (median of ``repeat`` after a warm-up).

    Benchmarks call it next to (interleaved with) the workload they measure, so that a machine
    shared with other jobs slows both alike and the ratio of the two stays meaningful. With
    ``clock=time.process_time`` it is the rate per second of CPU time this process got (CPU only).
    """
    device = torch.device(device)
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    times = []
    with torch.inference_mode():
        a @ b  # warm-up
        for _ in range(repeat):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = clock()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(clock() - start)
    return 2 * m * k * n / sorted(times)[len(times) // 2]
