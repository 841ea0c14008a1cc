"""VAE encode and decode time, peak memory and achieved FLOP/s at several sizes and dtypes.

Each (size, dtype) runs in a fresh subprocess so that the CPU peak resident memory (ru_maxrss)
belongs to it alone. FLOPs are counted analytically (``seedvr2.models.flops``: every convolution
and the mid-block attention); before each timed run the script measures the matrix-multiply rate
in the same dtype, so that on a shared machine both see the same load. The model has random
weights (speed does not depend on their values); ``--preset released`` is the released structure.

    python benchmarks/vae_codec.py --sizes 5x64x64 9x128x128 --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    device_peak_mib,
    markdown_table,
    matmul_rate,
    peak_rss_mib,
    reset_peak,
)
from seedvr2.models import build_vae  # noqa: E402
from seedvr2.models.flops import vae_decode_flops, vae_encode_flops  # noqa: E402


def timed(fn, device: torch.device) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def run_one(args: argparse.Namespace, size: str, dtype_name: str) -> dict:
    frames, height, width = (int(n) for n in size.split("x"))
    device, dtype = torch.device(args.device), getattr(torch, dtype_name)
    torch.manual_seed(0)
    vae = build_vae(args.preset, device=device, dtype=dtype).eval().requires_grad_(False)
    video = torch.rand(1, 3, frames, height, width, device=device, dtype=dtype) * 2 - 1
    latent_shape = (1 + (frames - 1) // 4, height // 8, width // 8)
    enc_flops = vae_encode_flops(vae.config, (frames, height, width)).total
    dec_flops = vae_decode_flops(vae.config, latent_shape).total
    before = peak_rss_mib()
    enc, dec, rates = [], [], []
    with torch.inference_mode():
        warm = torch.rand(1, 3, 5, 32, 32, device=device, dtype=dtype)
        vae.decode(vae.encode(warm).mean)
        reset_peak(device)
        for _ in range(args.repeat):
            rates.append(matmul_rate(4096, 512, 512, dtype, device))
            seconds, posterior = timed(partial(vae.encode, video), device)
            enc.append(seconds)
            dec.append(timed(partial(vae.decode, posterior.mean), device)[0])
    return dict(size=size, dtype=dtype_name, encode=statistics.median(enc),
                decode=statistics.median(dec), enc_flops=enc_flops, dec_flops=dec_flops,
                rate=statistics.median(rates), rss_growth=peak_rss_mib() - before,
                device_peak=device_peak_mib(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="released")
    parser.add_argument("--sizes", nargs="+", default=["5x64x64", "9x128x128"],
                        help="video frames x height x width (1 + 4n frames, multiples of 8)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args, *args.one)))
        return
    rows = []
    for size in args.sizes:
        for dtype in args.dtypes:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--one", size, dtype]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout.splitlines()[-1])
            frames = int(size.split("x")[0])
            total = r["encode"] + r["decode"]
            flops = r["enc_flops"] + r["dec_flops"]
            rows.append([
                size, dtype, f"{r['encode']:.2f}", f"{r['decode']:.2f}", f"{frames / total:.2f}",
                f"{r['rss_growth']:.0f}",
                "-" if r["device_peak"] is None else f"{r['device_peak']:.0f}",
                f"{flops / 1e9:.0f}", f"{flops / total / 1e9:.1f}", f"{r['rate'] / 1e9:.1f}",
                f"{flops / total / r['rate']:.2f}",
            ])
    print(f"VAE {args.preset}, {args.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, median of {args.repeat}, default temporal chunk (4 frames)")
    print(markdown_table(
        ["video f x h x w", "dtype", "encode s", "decode s", "frames/s (enc+dec)",
         "peak RSS growth MiB", "device peak MiB", "GFLOP", "GFLOP/s", "matmul GFLOP/s",
         "of matmul rate"], rows))


if __name__ == "__main__":
    main()
