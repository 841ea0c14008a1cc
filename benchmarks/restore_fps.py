"""Whole-clip restoration speed (frames/s) with the per-phase split the pipeline reports.

Restores a synthetic clip (a moving gradient with noise) held in memory with
``Restorer.restore``; the model is the bundled small one by default (any preset, folder or repo
id with ``--model``). The first clip of each size is a warm-up; the table shows the median of
``--repeat`` timed runs, with the median encode / DiT / decode seconds from
``Restorer.phase_totals`` (the stream pipelines batches on worker threads, so phases can overlap
and their sum can exceed the wall time). The analytic FLOPs of the networks give the
achieved FLOP/s against an interleaved measurement of the matrix-multiply rate.

    python benchmarks/restore_fps.py --sizes 9x64x64 21x96x96 --scale 2

``--random 3b`` (or ``7b``) restores with the released structure at random weights, built on
the device (no download, no file), e.g. the paper's setting on a GPU:

    python benchmarks/restore_fps.py --random 3b --sizes 101x768x1344 --scale 1 \
        --device cuda --dtype bf16 --batch-size 101 --repeat 1
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table, matmul_rate, peak_rss_mib  # noqa: E402
from seedvr2.models import build_dit, build_vae  # noqa: E402
from seedvr2.models.dit import DIT_PRESETS  # noqa: E402
from seedvr2.models.flops import (  # noqa: E402
    dit_forward_flops,
    vae_decode_flops,
    vae_encode_flops,
)
from seedvr2.pipeline import RestoreOptions, Restorer  # noqa: E402
from seedvr2.pipeline.options import RuntimeOptions  # noqa: E402
from seedvr2.pipeline.restorer import LoadedModel  # noqa: E402
from seedvr2.pipeline.runtime import resolve_device, resolve_dtype  # noqa: E402
from seedvr2.weights import ModelFiles  # noqa: E402


def random_restorer(preset: str, device: str, dtype: str, **options: object) -> Restorer:
    """A Restorer over the released ``preset`` structure with random weights, built in place."""
    target = resolve_device(device)
    precision = resolve_dtype(dtype, target)
    torch.manual_seed(0)
    dit = build_dit(preset, device=target, dtype=precision).eval()
    vae = build_vae(device=target, dtype=precision).eval()
    text = torch.randn(58, dit.config.txt_in_dim)  # (L, E), L as the released pos_emb
    files = ModelFiles(Path("random"), Path("random"), None, None, f"random {preset}")
    model = LoadedModel(dit, vae, text, None, files)
    return Restorer(model, RestoreOptions(**options), RuntimeOptions(device=device, dtype=dtype), ())


def synthetic_clip(frames: int, height: int, width: int) -> np.ndarray:
    """(f, h, w, 3) float32 in [0, 1]: a moving gradient plus a little noise."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = np.stack([
        np.stack([(cols / width + 0.02 * i) % 1, rows / height, np.full_like(rows, i / frames)], -1)
        for i in range(frames)
    ])
    return np.clip(clip + rng.normal(0, 0.02, clip.shape), 0, 1).astype(np.float32)


def clip_flops(restorer: Restorer, frames: int, out_h: int, out_w: int) -> float:
    """Analytic FLOPs of encoding, one DiT pass and decoding one batch of ``frames`` frames, with
    the VAE's own compression; an exact space-to-depth VAE runs as a pixel (un)shuffle: no
    FLOPs (its convolutions are skipped)."""
    dit, vae = restorer.model.dit, restorer.model.vae
    step, down = vae.config.temporal_factor, vae.config.spatial_factor
    padded = frames + (-(frames - 1)) % step
    latent = (1 + (padded - 1) // step, out_h // down, out_w // down)
    text = restorer.model.text.shape[0]
    dit_flops = dit_forward_flops(dit.config, latent, text).total
    if vae.space_to_depth_stages is not None:
        return dit_flops
    return (vae_encode_flops(vae.config, (padded, out_h, out_w)).total + dit_flops
            + vae_decode_flops(vae.config, latent).total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the bundled small model")
    parser.add_argument("--sizes", nargs="+", default=["9x64x64", "21x96x96"],
                        help="input frames x height x width")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--random", choices=sorted(DIT_PRESETS), help="DiT preset, random weights")
    parser.add_argument("--batch-size", type=int, default=21, help="frames per batch, 4n+1")
    args = parser.parse_args()

    options = {"scale": args.scale, "batch_size": args.batch_size}
    if args.random:
        restorer = random_restorer(args.random, args.device, args.dtype, **options)
    else:
        restorer = Restorer.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                            **options)  # fmt: skip
    cuda = restorer.device.type == "cuda"
    rows = []
    for size in args.sizes:
        frames, height, width = (int(n) for n in size.split("x"))
        clip = synthetic_clip(frames, height, width)
        out = restorer.restore(clip[:5])  # warm-up (small clip of the same frame size)
        out_h, out_w = out.shape[1:3]
        times, rates, phases = [], [], []
        if cuda:
            torch.cuda.reset_peak_memory_stats(restorer.device)
        for _ in range(args.repeat):
            rates.append(matmul_rate(4096, 512, 2048, device=args.device))
            restorer.phase_seconds.clear()
            start = time.perf_counter()
            restorer.restore(clip)
            times.append(time.perf_counter() - start)
            phases.append(restorer.phase_totals())
        seconds = statistics.median(times)
        phase = {p: statistics.median(run.get(p, 0.0) for run in phases)
                 for p in ("encode", "dit", "decode")}
        batches = restorer.plan_batches(frames)
        flops = sum(clip_flops(restorer, b.stop - b.start, out_h, out_w) for b in batches)
        rate = statistics.median(rates)
        rows.append([
            f"{frames}x{height}x{width}", f"{out_h}x{out_w}", len(batches), f"{seconds:.2f}",
            f"{frames / seconds:.2f}",
            *(f"{value:.2f}" for value in phase.values()), f"{flops / seconds / 1e9:.1f}",
            f"{flops / seconds / rate:.2f}",
            f"{torch.cuda.max_memory_allocated(restorer.device) / 2**30:.1f}" if cuda else "-",
        ])
    model = f"random {args.random}" if args.random else args.model or "bundled seedvr2-small"
    print(f"Whole-clip restoration, {model}, {args.device} {args.dtype}, scale {args.scale}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; median of "
          f"{args.repeat}; matmul rate {statistics.median(rates) / 1e9:.0f} GFLOP/s (last size); "
          f"peak RSS {peak_rss_mib():.0f} MiB")
    print(markdown_table(
        ["input f x h x w", "output h x w", "batches", "s / clip", "frames/s", "encode s",
         "DiT s", "decode s", "GFLOP/s", "of matmul rate", "CUDA peak GiB"], rows))


if __name__ == "__main__":
    main()
