"""How much a fidelity-stage model gains over its pass-through on its own training caches.

Per cached clip: the model's one-step output against the HQ latent, and the LQ latent (the
bicubic up-scale: what the pass-through returns) against it. Clips are bucketed by that bicubic
latent MSE, a proxy of how degraded the input is; each bucket prints its mean gain in dB, how
many clips the model made worse, and the worst. Training data only: it shows what the model
fits, not how it generalises (that is scripts/validate_small.sh).

    python scripts/cache_gains.py CONFIG MODEL [--clips 300] [--cache DIR ...] [override ...]

MODEL is a DiT weights file for CONFIG's network; the caches default to the config's
``data.cache`` and ``data.extra_caches``.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import torch
from safetensors.torch import load_file

from seedvr2.train.config import load_config
from seedvr2.train.data import SampleKey
from seedvr2.train.distributed import init_distributed
from seedvr2.train.latent_cache import LatentItems
from seedvr2.train.loop import build_stage

EDGES = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, math.inf)  # bicubic latent MSE buckets


def clip_errors(stage, files: list[Path]) -> list[tuple[float, float]]:
    """(bicubic MSE, model MSE) of each cached clip."""
    generator = stage.generator.module.eval()
    out = []
    for index, path in enumerate(files):
        tensors = load_file(str(path))
        _, frames, height, width = tensors["x0"].shape  # (c, t, h, w)
        key = SampleKey(0, 0, index, frames=frames, height=height * stage.codec.spatial,
                        width=width * stage.codec.spatial)
        batch = stage.latents(LatentItems([tensors["x0"]], [tensors["lq"]], [None], [key]),
                              training=False)
        with torch.no_grad():
            fake = stage.one_step(generator, batch, stage.condition(batch, 0), stage.start_noise)
        out.append(((batch.lq - batch.x0).square().mean().item(),
                    (fake - batch.x0).square().mean().item()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("model", help="DiT weights file (becomes model.init)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    parser.add_argument("--clips", type=int, default=300, help="clips drawn per cache")
    parser.add_argument("--cache", nargs="+", help="default: the config's caches")
    args = parser.parse_args()
    cfg = load_config(args.config, [f"model.init={args.model}", *args.overrides])
    caches = args.cache or [str(cfg.data.cache), *cfg.data.extra_caches]
    stage = build_stage(cfg, init_distributed(cfg.run))
    print("| cache | bicubic latent MSE | clips | mean gain dB | worse | worst dB |")
    print("|---|---|---|---|---|---|")
    for cache in caches:
        files = sorted(Path(cache).glob("*.safetensors"))
        random.Random(0).shuffle(files)
        errors = clip_errors(stage, files[: args.clips])
        for low, high in zip(EDGES, EDGES[1:]):
            gains = [10 * math.log10((r + 1e-12) / (m + 1e-12)) for r, m in errors if low <= r < high]
            if gains:
                print(f"| {cache} | [{low:.0e}, {high:.0e}) | {len(gains)} | "
                      f"{sum(gains) / len(gains):+.2f} | {sum(g < 0 for g in gains)} | "
                      f"{min(gains):+.2f} |")


if __name__ == "__main__":
    main()
