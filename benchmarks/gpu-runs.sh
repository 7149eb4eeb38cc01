#!/usr/bin/env bash
# Long runs side by side on one GPU, one `python -m cifar_lightning study` process per (config, seed): one of
# these small runs leaves most of a GPU idle. Each run is fitted, then its best checkpoint tested; at the
# deadline every run still training gets SIGTERM, saves last.ckpt and exits, and the same study command
# continues it later (here or on another machine, from the checkpoints this script packs).
# With CUDA MPS available (nvidia-cuda-mps-control), the processes' kernels share the GPU at once instead
# of taking turns; the script tries it and goes on without it when it does not work.
# Usage: [MPS_EXTRA="CONFIG:SEED ..."] benchmarks/gpu-runs.sh DATA_DIR SECONDS OUT_DIR CONFIG:SEED ...
#   SECONDS: the whole script's budget (training stops 60 s before it, for the tests and packing).
#   MPS_EXTRA: runs added only when MPS is on.
#   OUT_DIR gets runs.tgz (every run folder without checkpoints, the logs, GPU utilisation every 10 s) and,
#   for runs that did not finish, in the order given and up to 60 MB in all (what a lent machine's output
#   allows), ckpt-MODEL-version_N.tar with the run's checkpoints, to resume from.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=$1 BUDGET=$2 OUT=$3
shift 3
START=$(date +%s)
source benchmarks/gpu-setup.sh  # wheels from .whl/, data from .gpu/
export OMP_NUM_THREADS=2
mkdir -p lightning_logs/gpu-runs
LOGS=lightning_logs/gpu-runs

export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
if nvidia-cuda-mps-control -d 2>/dev/null &&
  timeout 45 python3 -c "import torch; assert torch.ones(8, device='cuda').sum().item() == 8"; then
  echo "gpu-runs.sh: CUDA MPS on"
  set -- "$@" ${MPS_EXTRA:-}
else
  echo "gpu-runs.sh: CUDA MPS not available; the processes take turns on the GPU"
  echo quit | nvidia-cuda-mps-control 2>/dev/null
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 >"$LOGS/gpu-utilisation.csv" &
SAMPLER=$!

TRAIN=$((BUDGET - 60 - ($(date +%s) - START)))
echo "gpu-runs.sh: $# runs, $TRAIN s to train"
for run in "$@"; do
  config=${run%%:*} seed=${run#*:}
  name=$(basename "$config" .yaml)-seed$seed
  timeout -s TERM -k 30 "$TRAIN" python3 -m cifar_lightning study --configs "$config" --seeds "$seed" --parallel false \
    "--args=--data.data_dir=$DATA --data.download=false --trainer.enable_progress_bar=false" \
    >"$LOGS/$name.log" 2>&1 &
done
wait $(jobs -p | grep -v "^$SAMPLER$")
kill $SAMPLER
echo "gpu-runs.sh: training stopped after $(($(date +%s) - START)) s"
grep -h -E "^study:|^test accuracy|^best checkpoint|^error|Error" "$LOGS"/*.log | sort | uniq

tar czf "$OUT/runs.tgz" --exclude="*.ckpt" lightning_logs
packed=0
for run in "$@"; do
  config=${run%%:*} seed=${run#*:}
  for folder in lightning_logs/"$(basename "$config" .yaml)"/version_*; do
    if grep -q "^seed_everything: $seed$" "$folder/config.yaml" 2>/dev/null && [ ! -f "$folder/test_results.json" ] &&
      [ -d "$folder/checkpoints" ] && [ $((packed + $(du -sb "$folder/checkpoints" | cut -f1))) -le 60000000 ]; then
      tar cf "$OUT/ckpt-$(basename "$config" .yaml)-$(basename "$folder").tar" "$folder/checkpoints"
      packed=$((packed + $(du -sb "$folder/checkpoints" | cut -f1)))
    fi
  done
done
ls -la "$OUT"
