"""VAE spatial tiles and temporal chunks: peak memory and time of encode + decode.

Each row runs in a fresh subprocess, so the CPU peak resident memory (ru_maxrss) or the CUDA
peak allocation belongs to that row alone. The VAE has the released structure at a reduced width
(``--channels``; the memory of each layer scales with the width, the shape of the curve does not)
and random weights. The last column is the RMS difference from the untiled result relative to
its RMS: tiles are blended, but group norms and the mid-block attention see one tile only, so
it is not zero (random weights exaggerate it; trained weights vary less across a frame).

    python benchmarks/vae_tiling.py --frames 5 --size 512 --channels 32 --tiles 0 256 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_peak_mib, markdown_table, peak_rss_mib, reset_peak  # noqa: E402
from seedvr2.models import build_vae  # noqa: E402
from seedvr2.models.vae import TileSpec  # noqa: E402


def build(args: argparse.Namespace) -> torch.nn.Module:
    width = args.channels
    config = {"block_channels": [width, 2 * width, 4 * width, 4 * width], "norm_groups": 8}
    torch.manual_seed(0)
    return build_vae(config, device=args.device, dtype=getattr(torch, args.dtype)).eval()


def clip(args: argparse.Namespace) -> torch.Tensor:  # (1, 3, frames, size, size) in [-1, 1]
    generator = torch.Generator().manual_seed(0)
    shape = (1, 3, args.frames, args.size, args.size)
    return (torch.rand(shape, generator=generator) * 2 - 1).to(args.device, getattr(torch, args.dtype))


@torch.inference_mode()
def run_one(args: argparse.Namespace, tile_edge: int, chunk: int) -> dict:
    device = torch.device(args.device)
    vae = build(args)
    video = clip(args)
    tile = TileSpec(tile_edge, args.overlap) if tile_edge else None
    reset_peak(device)
    start = time.perf_counter()
    latent = vae.encode(video, temporal_chunk=chunk, tile=tile).mean
    decoded = vae.decode(latent, temporal_chunk=chunk, tile=tile)
    seconds = time.perf_counter() - start
    row = {"seconds": seconds, "rss": peak_rss_mib(), "device_peak": device_peak_mib(device)}
    torch.save(decoded.float().cpu(), args.scratch / f"{tile_edge}_{chunk}.pt")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5, help="1 + 4n frames")
    parser.add_argument("--size", type=int, default=512, help="square frame edge in pixels")
    parser.add_argument("--channels", type=int, default=32, help="first VAE stage width (released: 128)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 256, 128], help="0: untiled")
    parser.add_argument("--chunks", type=int, nargs="+", default=[4], help="temporal chunks (0: all)")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/seedvr2-vae-tiling"))
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        print(json.dumps(run_one(args, *args.one)))
        return
    rows, results = [], {}
    for chunk in args.chunks:
        for tile in args.tiles:
            child = [sys.executable, __file__, "--one", str(tile), str(chunk), *sys.argv[1:]]
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            results[tile, chunk] = json.loads(done.stdout.splitlines()[-1])
    reference = torch.load(args.scratch / f"0_{args.chunks[0]}.pt") if 0 in args.tiles else None
    for (tile, chunk), result in results.items():
        difference = "–"
        if reference is not None:
            decoded = torch.load(args.scratch / f"{tile}_{chunk}.pt")
            error = (decoded - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()
            difference = f"{error.item():.1e}"
        peak = result["device_peak"] if result["device_peak"] is not None else result["rss"]
        rows.append([tile or "none", chunk or "all", f"{result['seconds']:.2f}", f"{peak:.0f}",
                     difference])  # fmt: skip
    print(f"VAE encode + decode on {args.device} ({args.dtype}), {args.frames} frames "
          f"{args.size}x{args.size}, widths {args.channels}/{2 * args.channels}/"
          f"{4 * args.channels}/{4 * args.channels}, tile overlap {args.overlap}\n")  # fmt: skip
    print(markdown_table(["tile", "temporal chunk", "seconds", "peak MiB", "RMS diff vs untiled (relative)"],
                         rows))  # fmt: skip


if __name__ == "__main__":
    main()
