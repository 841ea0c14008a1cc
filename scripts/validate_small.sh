#!/usr/bin/env bash
# Model selection for seedvr2-small on runs/val only (procedural images, seed 1, and the
# scikit-image photos coffee and rocket; never trained on, never the evaluation clips).
# Usage: scripts/validate_small.sh RUN_DIR STEP [STEP ...]; prints mean PSNR/SSIM per regime.
set -euo pipefail
run=$1; shift
G=configs/degradations
for step in "$@"; do
  model=runs/select/$(basename "$run")-$step
  mkdir -p "$model"
  seedvr2 export "$run/checkpoints/step_$(printf %08d "$step").pt" "$model/dit.safetensors" >/dev/null
  cp runs/small-s2d/vae.safetensors runs/small-text/pos_emb.safetensors "$model/"
  models+=(--model "$model")
done
for scale in 2 4; do
  for regime in clean mild heavy; do
    case $regime in
      clean) deg=() ;; mild) deg=(--degradation $G/mild_video.yaml) ;;
      heavy) deg=(--degradation $G/realesrgan_video.yaml) ;;
    esac
    out=runs/select/val-$regime-x$scale
    rm -rf "$out"
    seedvr2 eval runs/val -o "$out" "${models[@]}" --scale $scale "${deg[@]}" --frames 1 \
      --device cpu --metrics psnr,ssim >/dev/null
    python - "$out/results.csv" "$regime x$scale" <<'PY'
import csv, sys
from collections import defaultdict
rows = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    if r["value"] not in ("", "nan"):
        rows[(r["method"], r["metric"])].append(float(r["value"]))
base = {m: sum(rows[("bicubic", m)]) / len(rows[("bicubic", m)]) for m in ("psnr", "ssim")}
for (method, metric), values in sorted(rows.items()):
    if metric == "psnr" and method not in ("bicubic", "lanczos_unsharp"):
        ssim = sum(rows[(method, "ssim")]) / len(rows[(method, "ssim")])
        psnr = sum(values) / len(values)
        print(f"{sys.argv[2]:9s} {method:24s} psnr {psnr:.3f} ({psnr - base['psnr']:+.3f})"
              f"  ssim {ssim:.4f} ({ssim - base['ssim']:+.4f})")
PY
  done
done
