#!/usr/bin/env bash
# Restore one small clip over 2 torchrun ranks (gloo, CPU) RUNS times; count the runs that fail.
# Before ranks ended with exit_rank, about 1 run in 30-55 aborted at exit on a busy 2-core machine.
# Usage: scripts/stress_torchrun_exit.sh MODEL_DIR [RUNS=100]   (a model folder, e.g. the tests')
set -u
model=$1 runs=${2:-100}
work=$(mktemp -d)
cd "$(dirname "$0")/.."
.venv/bin/python - "$work/in.mkv" <<'PY'
import sys
sys.path.insert(0, "tests")
from pathlib import Path
from media_fixtures import pattern, write_video
write_video(Path(sys.argv[1]), pattern(17, 48, 64), codec="ffv1", pix_fmt="yuv444p")
PY
export OMP_NUM_THREADS=1 PYTHONFAULTHANDLER=1
failed=0
for i in $(seq 1 "$runs"); do
  rm -rf "$work/out" && mkdir "$work/out"
  if ! .venv/bin/python -m torch.distributed.run --standalone --nproc-per-node 2 -m seedvr2 \
      restore "$work/in.mkv" -o "$work/out/two.mkv" --model "$model" --device cpu --codec ffv1 \
      -b 9 --overlap 4 --scale 2 --encode-tile 64 --decode-tile 64 --tile-overlap 16 -q \
      --sequence-parallel > "$work/log.txt" 2>&1; then
    failed=$((failed + 1)); cp "$work/log.txt" "$work/failed-$i.txt"
  fi
done
echo "$failed of $runs runs failed (logs of failures in $work)"
