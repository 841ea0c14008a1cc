"""Choosing the device and the precision a run uses."""

from __future__ import annotations

import importlib.util
import resource
import sys

import torch

from seedvr2.errors import ConfigError, InputError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto", option: str = "--device") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; a named device must be usable.

    ``option`` names the flag in errors.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"{option} {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{option} cuda: this PyTorch has no usable CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"{option} {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{option} mps: Apple MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"{option} {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPUs that support it (else fp16), fp32 on the CPU."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if name not in DTYPES:
        raise InputError(f"--dtype {name!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def check_attention(backend: str, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse ``--attention flash`` where flash-attn cannot run (it needs CUDA, fp16/bf16 and
    the package), before a model is loaded."""
    if backend != "flash":
        return
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
        raise InputError(f"--attention flash needs a CUDA device in fp16 or bf16, not {device} in "
                         f"{str(dtype).removeprefix('torch.')}; use --attention auto")  # fmt: skip
    if importlib.util.find_spec("flash_attn") is None:
        raise InputError("--attention flash needs the flash-attn package (pip install flash-attn); "
                         "use --attention auto")  # fmt: skip


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a run may use on ``device``: free CUDA memory, MPS's recommended maximum less what
    Metal holds already, or the CPU's available RAM (Linux ``/proc/meminfo``); None when it
    cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type == "mps":
        return max(0, torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_finite(decoded: torch.Tensor, device: torch.device, dtype: torch.dtype) -> None:
    """On Apple MPS in fp16, refuse NaN/inf decodes (they become black video) with a fix."""
    if device.type == "mps" and dtype == torch.float16 and not torch.isfinite(decoded).all():
        raise ConfigError(
            "the decoded frames hold NaN/inf values, a known fp16 problem on Apple MPS; "
            "run again with --dtype fp32"
        )


def peak_memory(devices: list[torch.device]) -> dict[str, int | str]:
    """The memory high-water mark: CUDA max allocated when on CUDA, else the process max RSS."""
    cuda = [d for d in devices if d.type == "cuda"]
    if cuda:
        peak = sum(torch.cuda.max_memory_allocated(d) for d in dict.fromkeys(cuda))
        return {"kind": "cuda_max_memory_allocated", "bytes": peak}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"kind": "max_rss", "bytes": rss if sys.platform == "darwin" else rss * 1024}
