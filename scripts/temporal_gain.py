"""Does a model use neighbouring frames? Each clip's LQ (one draw of a degradation) is restored
once as a whole clip and once frame by frame; the two are scored against the ground truth.

A model that fuses frames (noise is fresh in every frame of the protocol's degradations) gains
in the joint pass; one that restores each frame alone scores the same both ways.

    python scripts/temporal_gain.py MODEL [MODEL ...] --scale 4 [--clips runs/val-video]

Prints PSNR (8-bit outputs, mean over clips, as ``seedvr2 eval`` scores them) of bicubic, the
joint pass and the frame-by-frame pass for each model. Selection data only (``runs/val-video``
by default, made by ``scripts/small_model_data.py``); never the evaluation clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seedvr2.eval.baselines import bicubic
from seedvr2.eval.benchmark import eight_bit_frames
from seedvr2.eval.metrics.fidelity import psnr
from seedvr2.eval.protocol import clip_seed, crop_to_multiple, synthesize_lq
from seedvr2.media import read_frames
from seedvr2.pipeline.restorer import Restorer

PROTOCOL = "configs/degradations/realesrgan_video.yaml"


def score(outputs: list[np.ndarray], gts: list[np.ndarray]) -> float:
    """Mean PSNR of (f, h, w, 3) outputs against their ground truths."""
    return float(np.mean([psnr(eight_bit_frames(out), eight_bit_frames(gt))
                          for out, gt in zip(outputs, gts)]))


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
    gts = [crop_to_multiple(read_frames(clip)[..., :3], args.scale) for clip in clips]
    lqs = [synthesize_lq(gt, args.scale, args.degradation, clip_seed(args.seed, clip.name))
           for gt, clip in zip(gts, clips)]
    base = score([bicubic(lq, args.scale) for lq in lqs], gts)
    print(f"| model | bicubic | joint | frame by frame | joint - frame by frame |  x{args.scale}")
    print("|---|---|---|---|---|")
    for model in args.models:
        restorer = Restorer.from_pretrained(model, device="cpu", scale=args.scale)
        joint = score([restorer.restore(lq) for lq in lqs], gts)
        alone = score([np.concatenate([restorer.restore(lq[i:i + 1]) for i in range(len(lq))])
                       for lq in lqs], gts)
        print(f"| {model} | {base:.3f} | {joint:.3f} | {alone:.3f} | {joint - alone:+.3f} |")


if __name__ == "__main__":
    main()
