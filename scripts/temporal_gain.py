"""Does a model use neighbouring frames? Each clip's LQ (one draw of a degradation) is restored
once as a whole clip and once frame by frame; the two are scored against the ground truth.

A model that fuses frames (noise is fresh in every frame of the protocol's degradations) gains
in the joint pass; one that restores each frame alone scores the same both ways.

    python scripts/temporal_gain.py MODEL [MODEL ...] --scale 4 [--clips runs/val-video]

Prints PSNR (8-bit outputs, mean over clips) of bicubic, the joint pass and the frame-by-frame
pass for each model. Selection data only (``runs/val-video`` by default, made by
``scripts/small_model_data.py``); never the evaluation clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from seedvr2.eval.metrics.fidelity import psnr
from seedvr2.eval.protocol import clip_seed, crop_to_multiple, synthesize_lq
from seedvr2.media import read_frames
from seedvr2.pipeline.restorer import Restorer

PROTOCOL = "configs/degradations/realesrgan_video.yaml"


def quantised(frames: torch.Tensor) -> torch.Tensor:  # (f, 3, h, w) -> 8-bit levels in [0, 1]
    return (frames.clamp(0, 1) * 255).round() / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--clips", default="runs/val-video")
    parser.add_argument("--degradation", default=PROTOCOL)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clips = sorted(p for p in Path(args.clips).iterdir() if p.suffix == ".mkv")
    if not clips:
        raise SystemExit(f"no .mkv clips in {args.clips}: run scripts/small_model_data.py first")
    gts, lqs = [], []
    for clip in clips:
        gt = crop_to_multiple(read_frames(clip)[..., :3], args.scale)  # (f, h, w, 3)
        lq = synthesize_lq(gt, args.scale, args.degradation, clip_seed(args.seed, clip.name))
        gts.append(rearrange(torch.from_numpy(gt), "f h w c -> f c h w"))
        lqs.append(rearrange(torch.from_numpy(lq), "f h w c -> f c h w"))
    bicubic = [quantised(F.interpolate(lq, scale_factor=args.scale, mode="bicubic"))
               for lq in lqs]
    print(f"| model | bicubic | joint | frame by frame | joint - frame by frame |  x{args.scale}")
    print("|---|---|---|---|---|")
    base = np.mean([psnr(b, gt) for b, gt in zip(bicubic, gts)])
    for model in args.models:
        restorer = Restorer.from_pretrained(model, device="cpu", scale=args.scale)
        joint, alone = [], []
        for lq, gt in zip(lqs, gts):
            plan = restorer.plan_size(tuple(lq.shape[-2:]))
            joint.append(psnr(quantised(restorer.restore_clip(lq, plan, seed=0)), gt))
            frames = [restorer.restore_clip(lq[i:i + 1], plan, seed=0) for i in range(len(lq))]
            alone.append(psnr(quantised(torch.cat(frames)), gt))
        print(f"| {model} | {base:.3f} | {np.mean(joint):.3f} | {np.mean(alone):.3f} | "
              f"{np.mean(joint) - np.mean(alone):+.3f} |")


if __name__ == "__main__":
    main()
