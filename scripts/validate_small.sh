#!/usr/bin/env bash
# Model selection for seedvr2-small on runs/val only (procedural images, seed 1, and the
# scikit-image photos coffee and rocket; never trained on, never the evaluation clips), and on
# runs/val-smooth (the same images blurred: soft sources, where bicubic is near lossless), as
# clean down-scales (smooth) and through the mild config (smooth-mild: soft and compressed), and
# on runs/val-video (5-frame pans over the runs/val images) through the protocol (video-heavy:
# where using neighbouring frames pays), and on runs/val-photos (natural photographs, split from
# the Debian ones; tenth session on) through the protocol, the mild config and clean down-scales
# (photo-heavy, photo-mild, photo-clean: smoother content, where strong denoising pays).
# Usage: scripts/validate_small.sh RUN_DIR STEP [STEP ...]; prints mean PSNR/SSIM per regime
# against bicubic (scripts/summarize_eval.py). NETWORK=generator scores the raw (not averaged)
# generator instead of its EMA; BASELINES="DIR ..." scores those model folders alongside (for
# example the bundled model, src/seedvr2/assets/seedvr2-small).
set -euo pipefail
source "$(dirname "$0")/remove_outputs.sh"
run=$1; shift
G=configs/degradations
models=()
for baseline in ${BASELINES:-}; do models+=(--model "$baseline"); done
for step in "$@"; do
  model=runs/select/$(basename "$run")${NETWORK:+-$NETWORK}-$step
  remove_outputs "$model" dit.safetensors vae.safetensors pos_emb.safetensors
  mkdir -p "$model"
  seedvr2 export "$run/checkpoints/step_$(printf %08d "$step").pt" "$model/dit.safetensors" \
    ${NETWORK:+--network "$NETWORK"} >/dev/null
  cp runs/small-s2d/vae.safetensors runs/small-text/pos_emb.safetensors "$model/"
  models+=(--model "$model")
done
for scale in 2 4; do
  for regime in clean mild heavy smooth smooth-mild video-heavy photo-heavy photo-mild photo-clean; do
    data=runs/val; frames=1
    case $regime in
      clean) deg=() ;; mild) deg=(--degradation $G/mild_video.yaml) ;;
      heavy) deg=(--degradation $G/realesrgan_video.yaml) ;;
      smooth) deg=(); data=runs/val-smooth ;;  # soft sources: bicubic is near lossless
      smooth-mild) deg=(--degradation $G/mild_video.yaml); data=runs/val-smooth ;;
      video-heavy) deg=(--degradation $G/realesrgan_video.yaml); data=runs/val-video; frames=5 ;;
      photo-heavy) deg=(--degradation $G/realesrgan_video.yaml); data=runs/val-photos ;;
      photo-mild) deg=(--degradation $G/mild_video.yaml); data=runs/val-photos ;;
      photo-clean) deg=(); data=runs/val-photos ;;
    esac
    out=runs/select/val-$regime-x$scale
    remove_outputs "$out" "${EVAL_OUTPUTS[@]}"
    seedvr2 eval "$data" -o "$out" "${models[@]}" --scale $scale "${deg[@]}" --frames $frames \
      --device cpu --metrics psnr,ssim >/dev/null
  done
done
python scripts/summarize_eval.py runs/select/val-*-x4 runs/select/val-*-x2
