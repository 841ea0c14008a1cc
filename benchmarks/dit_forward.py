"""DiT forward time and peak memory against the number of tokens.

Each size runs in a fresh subprocess so that the CPU peak resident memory (ru_maxrss) belongs to
that size alone; the table shows the growth over the model's own footprint, which should be
proportional to the tokens (no fixed RoPE table as in the official code).

    python benchmarks/dit_forward.py --dim 512 --layers 4 --sizes 1x32x32 5x32x32 5x64x64 9x64x128
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
from seedvr2.models import build_dit  # noqa: E402
from seedvr2.models.dit import DIT_PRESETS  # noqa: E402


def run_one(args: argparse.Namespace, size: str) -> dict:
    t, h, w = (int(n) for n in size.split("x"))
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    base = DIT_PRESETS[args.preset].to_dict()
    heads = args.dim // base["head_dim"]
    base.update(dim=args.dim, heads=heads, num_layers=args.layers,
                mm_layers=min(base["mm_layers"], args.layers), window_methods=())
    model = build_dit(base, device=device, dtype=dtype).eval()
    txt_len = 58
    vid = torch.randn(t * h * w, model.config.vid_in_channels, device=device, dtype=dtype)
    txt = torch.randn(txt_len, model.config.txt_in_dim, device=device, dtype=dtype)
    call = dict(vid=vid, txt=txt, vid_shape=torch.tensor([[t, h, w]]),
                txt_shape=torch.tensor([[txt_len]]), timestep=torch.tensor([1000.0]))
    before = peak_rss_mib()
    with torch.inference_mode():
        model(**call)  # warm-up
        reset_peak(device)
        start = time.perf_counter()
        for _ in range(args.repeat):
            model(**call)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / args.repeat
    tokens = t * h * w // 4
    return dict(size=size, tokens=tokens, seconds=seconds,
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
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
        ])
    print(f"DiT {args.preset} structure, dim {args.dim}, {args.layers} layers, "
          f"{args.device} {args.dtype}")
    print(markdown_table(
        ["latent t x h x w", "tokens", "ms / forward", "peak RSS growth MiB", "KiB / token",
         "device peak MiB"], rows))


if __name__ == "__main__":
    main()
