"""VAE encode + decode time: this implementation against the official SeedVR code, same machine.

The official code is *not* part of this repository: point ``--official-root`` at a checkout of
github.com/ByteDance-Seed/SeedVR (only ``models/video_vae_v3`` and ``common`` are imported) whose
dependencies (diffusers, omegaconf) are importable, e.g. installed with
``pip install --target /tmp/offdeps diffusers omegaconf`` and ``PYTHONPATH=/tmp/offdeps``.

Both networks are the released structure (``s8_c16_t4_inflation_sd3.yaml``) with the official
inference settings (causal slicing of 4 frames, memory limits 0.5); the official model is built at
random weights and those weights are loaded into ours, so both compute the same function (the
maximum output difference is printed). Runs alternate (ours, theirs, then theirs, ours, ...) with a
matrix-multiply rate measurement before each pair, so a busy machine slows both alike; the table
shows medians.

    PYTHONPATH=/tmp/offdeps python benchmarks/vae_vs_official.py --official-root /tmp/official_seedvr
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table, matmul_rate  # noqa: E402
from seedvr2.models import build_vae  # noqa: E402
from seedvr2.models.flops import vae_decode_flops, vae_encode_flops  # noqa: E402


def build_official(root: Path) -> torch.nn.Module:
    """The official ``VideoAutoencoderKLWrapper`` with the released config and inference settings."""
    import torch.distributed as dist
    import yaml

    sys.path.insert(0, str(root))
    sys.modules.pop("common", None)  # benchmarks/common.py; the official tree has a package "common"
    from models.video_vae_v3.modules.attn_video_vae import VideoAutoencoderKLWrapper

    if not dist.is_initialized():  # the official causal convs ask for sequence-parallel ranks
        store = Path(tempfile.mkdtemp()) / "store"
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    args = yaml.safe_load((root / "models/video_vae_v3/s8_c16_t4_inflation_sd3.yaml").read_text())
    args.pop("__object__", None)
    args.setdefault("freeze_encoder", False)
    vae = VideoAutoencoderKLWrapper(**args).eval().requires_grad_(False)
    vae.set_causal_slicing(split_size=4, memory_device="same")  # configs_3b/main.yaml
    vae.set_memory_limit(conv_max_mem=0.5, norm_max_mem=0.5)
    return vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-root", type=Path, default=Path("/tmp/official_seedvr"))
    parser.add_argument("--size", default="17x256x256", help="frames x height x width")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames, height, width = (int(n) for n in args.size.split("x"))

    torch.manual_seed(0)
    theirs = build_official(args.official_root)
    ours = build_vae().eval().requires_grad_(False)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names as the checkpoint
    video = torch.rand(1, 3, frames, height, width) * 2 - 1

    def run_ours() -> torch.Tensor:
        return ours.decode(ours.encode(video).mean)

    def run_theirs() -> torch.Tensor:
        return theirs.decode(theirs.encode(video).posterior.mode()).sample

    runs = {"ours": run_ours, "official": run_theirs}
    times: dict[str, list[float]] = {name: [] for name in runs}
    rates = []
    outputs = {}
    with torch.inference_mode():
        small = torch.rand(1, 3, 5, 64, 64)  # warm-up: oneDNN primitives, allocator
        ours.decode(ours.encode(small).mean)
        theirs.decode(theirs.encode(small).posterior.mode())
        for rep in range(args.repeat):
            rates.append(matmul_rate(4096, 1024, 1024))
            order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
            for name in order:
                start = time.perf_counter()
                outputs[name] = runs[name]()
                times[name].append(time.perf_counter() - start)
                print(f"{name} run {rep}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    diff = (outputs["ours"] - outputs["official"]).abs().max().item()
    latent = (1 + (frames - 1) // 4, height // 8, width // 8)
    flops = (vae_encode_flops(ours.config, (frames, height, width))
             + vae_decode_flops(ours.config, latent)).total
    rate = statistics.median(rates)
    rows = []
    for name, values in times.items():
        seconds = statistics.median(values)
        rows.append([name, f"{seconds:.1f}", " / ".join(f"{v:.1f}" for v in values),
                     f"{frames / seconds:.3f}", f"{flops / seconds / 1e9:.1f}",
                     f"{flops / seconds / rate:.2f}"])
    print(f"VAE encode+decode, (1, 3, {frames}, {height}, {width}) float32, "
          f"{args.threads} threads, torch {torch.__version__}; analytic {flops / 1e12:.2f} TFLOP; "
          f"fp32 matmul rate {rate / 1e9:.1f} GFLOP/s (median of {len(rates)}, interleaved); "
          f"max |ours - official| = {diff:.2e}")
    print(markdown_table(
        ["implementation", "median s", "runs s", "frames/s", "GFLOP/s", "of matmul rate"], rows))
    ratio = statistics.median(times["official"]) / statistics.median(times["ours"])
    print(f"\nofficial / ours time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
