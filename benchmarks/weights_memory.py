"""Weights formats and block swap: load time, weight bytes, DiT forward time and peak memory.

A reduced-width DiT of the 3B structure (random weights) is written as fp32 and bf16 safetensors,
scaled mixed fp8 (``seedvr2 convert``) and GGUF Q8_0; each row loads one file with
``load_dit`` and runs forwards in a fresh subprocess, so the CPU peak resident memory (ru_maxrss)
is that row's alone (the files are written in a subprocess too: a child starts from its parent's
peak). Swap rows keep the last N blocks on the CPU; on the CPU the mechanism runs
with CPU -> CPU copies (its overhead only: there is no device memory to save).

    python benchmarks/weights_memory.py --dim 1024 --layers 8 --size 5x32x32 --swap 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from common import device_peak_mib, markdown_table, peak_rss_mib, reset_peak  # noqa: E402
from seedvr2.models import build_dit  # noqa: E402
from seedvr2.models.dit import DIT_PRESETS  # noqa: E402
from seedvr2.pipeline.block_swap import BlockSwap  # noqa: E402
from seedvr2.weights.convert import convert_weights  # noqa: E402
from seedvr2.weights.gguf_files import CONFIG_KEY, save_gguf  # noqa: E402
from seedvr2.weights.networks import load_dit  # noqa: E402

FORMATS = ("fp32", "bf16", "fp8_e4m3_scaled", "gguf_q8_0")


def write_files(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """The benchmark DiT in every format, by format name."""
    config = DIT_PRESETS["3b"].to_dict()
    config.update(dim=args.dim, heads=args.dim // config["head_dim"], num_layers=args.layers,
                  mm_layers=min(config["mm_layers"], args.layers // 2), window_methods=())
    torch.manual_seed(0)
    state = build_dit(config).state_dict()
    text = json.dumps(config)
    paths = {"fp32": folder / "fp32.safetensors"}
    save_file(state, paths["fp32"], metadata={"config": text})
    paths["bf16"] = convert_weights(paths["fp32"], folder / "bf16.safetensors", "bf16").path
    paths["fp8_e4m3_scaled"] = convert_weights(
        paths["fp32"], folder / "fp8.safetensors", "fp8_e4m3", scaled=True
    ).path
    paths["gguf_q8_0"] = save_gguf(state, folder / "q8_0.gguf", "Q8_0", {CONFIG_KEY: text})
    return paths


def run_one(args: argparse.Namespace, path: Path, swap: int) -> dict:
    """Load ``path``, run forwards (with ``swap`` blocks swapped), measure."""
    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    before = peak_rss_mib()
    reset_peak(device)
    start = time.perf_counter()
    model = load_dit(path, dtype, "cpu" if swap else device)
    if swap:
        swapper = BlockSwap(model, swap, device)
        swapper.move(model, device)
    load_seconds = time.perf_counter() - start
    t, h, w = (int(n) for n in args.size.split("x"))
    vid = torch.randn(t * h * w, model.config.vid_in_channels, device=device, dtype=dtype)
    txt = torch.randn(58, model.config.txt_in_dim, device=device, dtype=dtype)
    call = dict(vid=vid, txt=txt, vid_shape=torch.tensor([[t, h, w]]),
                txt_shape=torch.tensor([[58]]), timestep=torch.tensor([1000.0]))  # fmt: skip
    with torch.inference_mode():
        model(**call)  # warm-up
        reset_peak(device)
        start = time.perf_counter()
        for _ in range(args.repeat):
            model(**call)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / args.repeat
    return dict(load=load_seconds, forward=seconds, rss=peak_rss_mib() - before,
                device_peak=device_peak_mib(device))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1024, help="width (multiple of 128)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", default="5x32x32", help="latent t x h x w (h, w even)")
    parser.add_argument("--swap", type=int, default=4, help="blocks swapped in the swap rows")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("FILE", "SWAP"), help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args, Path(args.one[0]), int(args.one[1]))))
        return
    if args.write:
        print(json.dumps({k: str(v) for k, v in write_files(args, Path(args.write)).items()}))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--write", folder]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        paths = {k: Path(v) for k, v in json.loads(out.splitlines()[-1]).items()}
        runs = [(name, 0) for name in FORMATS] + [("bf16", args.swap), ("fp8_e4m3_scaled", args.swap)]
        for name, swap in runs:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--one", str(paths[name]), str(swap)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.splitlines()[-1])
            rows.append([
                name, swap, f"{paths[name].stat().st_size / 2**20:.1f}",
                f"{result['load'] * 1000:.0f}", f"{result['forward'] * 1000:.0f}",
                f"{result['rss']:.0f}",
                "-" if result["device_peak"] is None else f"{result['device_peak']:.0f}",
            ])  # fmt: skip
    compute = "fp32" if args.device == "cpu" else "bf16"
    print(f"DiT 3B structure, dim {args.dim}, {args.layers} blocks, latent {args.size}, "
          f"{args.device} ({compute} compute)")
    print(markdown_table(["weights", "swapped blocks", "file MiB", "load ms", "ms / forward",
                          "peak RSS growth MiB", "device peak MiB"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
