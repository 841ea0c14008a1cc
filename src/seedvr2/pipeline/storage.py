"""What a render keeps on disk: the key of its resume segments, and the space it needs.

The key holds everything that changes the restored frames, so segments are reused only for the
same input bytes, model bytes and settings on the same kind of device and software.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from seedvr2 import __version__
from seedvr2.digests import file_sha256, tree_sha256
from seedvr2.errors import OutputError

from .restorer import Restorer
from .resume import WorkFolder

_GB = 1 << 30
# Bytes per output pixel and frame written, generous: lossy codecs at a low CRF, lossless ones
# at 10/16 bits. Resume segments hold 16-bit codes compressed to a quarter to two thirds.
_OUTPUT_BYTES_PER_PIXEL = {"ffv1": 3.0, "png": 3.0, "prores": 1.2}
_LOSSY_BYTES_PER_PIXEL = 0.3
_SEGMENT_BYTES_PER_SAMPLE = 2 * 0.7
_MARGIN = 1.1


def _device_names(restorer: Restorer) -> list[str]:
    names = []
    for device in restorer.devices:
        name = str(device)
        if device.type == "cuda":
            name += f" {torch.cuda.get_device_name(device)}"
        names.append(name)
    return names


def render_key(restorer: Restorer, source: Path, selection: object) -> dict[str, Any]:
    """Everything that changes the frames of ``source`` restored by ``restorer``."""
    files = restorer.model.files
    model = [f and file_sha256(f) for f in (files.dit, files.vae, files.pos_emb, files.neg_emb)]
    return {
        "input": tree_sha256(source),
        "selection": selection,
        "model": model,
        "options": restorer.options,
        "numerics": [restorer.runtime.attention, restorer.runtime.compile, str(restorer.dtype)],
        "devices": _device_names(restorer),
        "versions": [__version__, torch.__version__],
    }


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def check_free_space(
    output: Path, shape: tuple[int, int, int], frames: int, codec: str, work: WorkFolder | None
) -> None:
    """Refuse a render whose output (and resume segments) would not fit on its disk.

    Args:
        output: the output path; its folder's file system is checked.
        shape: output frames' (h, w, channels).
        frames: output frames.
        codec: the output codec (an image output counts as ``png``).
        work: the render's work folder, whose finished segments already take their space.

    Raises:
        OutputError: the estimate exceeds the free space.
    """
    height, width, channels = shape
    pixels = height * width * frames
    is_video = work is not None
    per_pixel = _OUTPUT_BYTES_PER_PIXEL.get(codec if is_video else "png", _LOSSY_BYTES_PER_PIXEL)
    need = pixels * per_pixel
    if work is not None:
        need += pixels * channels * _SEGMENT_BYTES_PER_SAMPLE - _folder_bytes(work.path)
    need *= _MARGIN
    folder = next(p for p in (output.parent, *output.parent.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if need > free:
        raise OutputError(
            f"{output}: needs about {need / _GB:.1f} GB free in {folder} ({frames} frames of "
            f"{width}x{height}{' and resume segments' if is_video else ''}), only "
            f"{free / _GB:.1f} GB are; free some space or write elsewhere with -o"
        )
