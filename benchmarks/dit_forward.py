"""DiT forward time, peak memory and achieved FLOP/s against the number of tokens.

Each size runs in a fresh subprocess so that the CPU peak resident memory (ru_maxrss) belongs to
that size alone; the table shows the growth over the model's own footprint, which should be
proportional to the tokens (no fixed RoPE table as in the official code). The FLOPs are counted
analytically (``seedvr2.models.flops``: linear layers + window attention); before each timed
forward the script measures the matrix-multiply rate of a GEMM shaped like the model's MLP
(tokens x dim x hidden, same dtype), so that on a shared machine both see the same load, and
reports the median of the per-repeat ratios; on the CPU also the same ratio in FLOPs per second
of CPU time the process got (``time.process_time``), which other jobs on the machine disturb less.

    python benchmarks/dit_forward.py --dim 512 --layers 4 --sizes 1x32x32 5x32x32 5x64x64 9x64x128
    python benchmarks/dit_forward.py --dim 1024 --layers 4 --sizes 5x40x80 --repeat 3  # 4000 tokens
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
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
from seedvr2.models import build_dit  # noqa: E402
from seedvr2.models.dit import DIT_PRESETS  # noqa: E402
from seedvr2.models.flops import dit_forward_flops  # noqa: E402


def run_one(args: argparse.Namespace, size: str) -> dict:
    t, h, w = (int(n) for n in size.split("x"))
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    base = DIT_PRESETS[args.preset].to_dict()
    heads = args.dim // base["head_dim"]
    base.update(dim=args.dim, heads=heads, num_layers=args.layers,
                mm_layers=min(base["mm_layers"], args.layers), window_methods=())
    model = build_dit(base, device=device, dtype=dtype).eval()
    txt_len = args.txt_len
    vid = torch.randn(t * h * w, model.config.vid_in_channels, device=device, dtype=dtype)
    txt = torch.randn(txt_len, model.config.txt_in_dim, device=device, dtype=dtype)
    call = dict(vid=vid, txt=txt, vid_shape=torch.tensor([[t, h, w]]),
                txt_shape=torch.tensor([[txt_len]]), timestep=torch.tensor([1000.0]))
    tokens = t * h * w // 4
    flops = dit_forward_flops(model.config, (t, h, w), txt_len).total
    before = peak_rss_mib()
    times, rates, cpu_times, cpu_rates = [], [], [], []
    gemm = (min(tokens, 8192), model.config.dim, model.config.mlp_hidden, dtype, device)
    with torch.inference_mode():
        model(**call)  # warm-up
        reset_peak(device)
        for _ in range(args.repeat):
            rates.append(matmul_rate(*gemm))
            if device.type == "cpu":
                cpu_rates.append(matmul_rate(*gemm, clock=time.process_time))
            start, cpu_start = time.perf_counter(), time.process_time()
            model(**call)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    cpu_ratio = (statistics.median(flops / s / r for s, r in zip(cpu_times, cpu_rates))
                 if cpu_rates else None)
    return dict(size=size, tokens=tokens, seconds=statistics.median(times), flops=flops,
                rate=statistics.median(rates), cpu_ratio=cpu_ratio,
                ratio=statistics.median(flops / s / r for s, r in zip(times, rates)),
                rss_growth=peak_rss_mib() - before, device_peak=device_peak_mib(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="3b", choices=sorted(DIT_PRESETS))
    parser.add_argument("--dim", type=int, default=512, help="width (multiple of head_dim 128)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--sizes", nargs="+", default=["1x32x32", "5x32x32", "5x64x64", "9x64x96"],
                        help="latent t x h x w (h, w even)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--txt-len", type=int, default=58, help="text tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args, args.one)))
        return
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--one", size]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                           text=True).stdout.splitlines()[-1])
        rows.append([
            result["size"], result["tokens"], f"{result['seconds'] * 1000:.1f}",
            f"{result['rss_growth']:.0f}",
            f"{result['rss_growth'] / result['tokens'] * 1024:.1f}",
            "-" if result["device_peak"] is None else f"{result['device_peak']:.0f}",
            f"{result['flops'] / 1e9:.1f}", f"{result['flops'] / result['seconds'] / 1e9:.1f}",
            f"{result['rate'] / 1e9:.1f}", f"{result['ratio']:.2f}",
            "-" if result["cpu_ratio"] is None else f"{result['cpu_ratio']:.2f}",
        ])
    print(f"DiT {args.preset} structure, dim {args.dim}, {args.layers} layers, "
          f"{args.txt_len} text tokens, {args.device} {args.dtype}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, median of {args.repeat}")
    print(markdown_table(
        ["latent t x h x w", "tokens", "ms / forward", "peak RSS growth MiB", "KiB / token",
         "device peak MiB", "GFLOP", "GFLOP/s", "matmul GFLOP/s", "of matmul rate",
         "of matmul rate (CPU time)"], rows))


if __name__ == "__main__":
    main()
