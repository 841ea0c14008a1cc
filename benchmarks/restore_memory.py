"""Peak memory of a whole-file restoration against the clip length: it must not grow.

Each length runs ``restore_file`` in a fresh subprocess on a synthetic clip, so the peak
resident memory (CPU) or peak allocated memory (CUDA) belongs to that run alone. The model is
the bundled one, or a random model of the same structure (``--model random``), since memory
does not depend on the weights' values.

    python benchmarks/restore_memory.py --frames 50 250 --size 192x128 --scale 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from common import device_peak_mib, markdown_table, peak_rss_mib, reset_peak  # noqa: E402
from model_fixtures import write_tiny_model  # noqa: E402
from seedvr2.pipeline import Job, OutputSettings, Restorer, restore_file  # noqa: E402


def write_clip(path: Path, frames: int, width: int, height: int) -> Path:
    """A moving-gradient H.264 clip, encoded frame by frame (never held whole in memory)."""
    rows, cols = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = np.stack(
                [(cols + 3 * index) % 256, (rows * 2) % 256, np.full_like(rows, index % 256)], -1
            ).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def run_one(args: argparse.Namespace, frames: int) -> dict:
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp())
    model = write_tiny_model(work / "model") if args.model == "random" else args.model
    clip = write_clip(work / "clip.mp4", frames, *args.size)
    restorer = Restorer.from_pretrained(
        model, device=args.device, dtype=args.dtype, scale=args.scale, batch_size=args.batch_size
    )
    reset_peak(device)
    start = time.perf_counter()
    result = restore_file(restorer, Job(clip, work / "out.mp4"), settings=OutputSettings())
    return {
        "frames": result.frames,
        "seconds": time.perf_counter() - start,
        "rss": peak_rss_mib(),
        "device_peak": device_peak_mib(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 250])
    parser.add_argument("--size", default="192x128", help="input WIDTHxHEIGHT")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=21)
    parser.add_argument("--model", default="random", help="'random' (tiny random) or a folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    args.size = tuple(int(n) for n in args.size.split("x"))
    if args.one is not None:
        print(json.dumps(run_one(args, args.one)))
        return
    rows, base = [], None
    for frames in args.frames:
        child = [sys.executable, __file__, "--one", str(frames), *sys.argv[1:]]
        result = json.loads(subprocess.run(child, capture_output=True, text=True,
                                           check=True).stdout.splitlines()[-1])  # fmt: skip
        peak = result["device_peak"] if result["device_peak"] is not None else result["rss"]
        base = base or peak
        rows.append([frames, f"{result['seconds']:.1f}", f"{result['frames'] / result['seconds']:.2f}",
                     f"{result['rss']:.0f}", f"{result['device_peak'] or 0:.0f}",
                     f"{100 * (peak - base) / base:+.1f} %"])  # fmt: skip
    print(f"restore_file on {args.device}, input {args.size[0]}x{args.size[1]}, scale "
          f"{args.scale}, batch {args.batch_size}, model {args.model}\n")  # fmt: skip
    print(markdown_table(["frames", "seconds", "frames/s", "peak RSS MiB", "device peak MiB",
                          "peak vs first"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
