#!/usr/bin/env bash
# Trains configs/model4-aug.yaml on a GPU, side by side with variants (one process each: one of these
# small runs leaves most of a GPU idle), tests each run's best checkpoint, and prints validation
# accuracy by epoch, test accuracy and wall time.
# Usage: benchmarks/gpu-aug.sh DATA_DIR SECONDS_PER_RUN OUTPUT_DIR|"" [NAME:OVERRIDES ...]
# Each variant is a run name and the command-line overrides it adds to the config, for example
#   "model4-aug-d0.3:--model.dropout=0.3"; with none given, the config runs as it is.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
LIMIT=${2:-600}
OUTPUT=${3:-}
shift 3 || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("model4-aug:")
COMMON=(--config configs/model4-aug.yaml --data.data_dir "$DATA" --data.download false
  --trainer.enable_progress_bar false --trainer.enable_model_summary false)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2

train_and_test() {
  local name=$1 overrides=$2 start
  start=$(date +%s)
  # shellcheck disable=SC2086  # overrides are several words
  timeout "$LIMIT" python3 -m cifar_lightning fit "${COMMON[@]}" --trainer.logger.init_args.name "$name" \
    $overrides >"lightning_logs/$name.log" 2>&1
  echo "$name: fit exit $? after $(($(date +%s) - start)) s"
  python3 -m cifar_lightning test "${COMMON[@]}" --trainer.logger.init_args.name "$name" 2>&1 |
    grep -E "^test accuracy|^error" | sed "s/^/$name: /"
}

mkdir -p lightning_logs
for variant in "${VARIANTS[@]}"; do
  train_and_test "${variant%%:*}" "${variant#*:}" &
done
wait
python3 - "${VARIANTS[@]}" <<'PY'
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for variant in sys.argv[1:]:
    name = variant.split(":")[0]
    events = EventAccumulator(f"lightning_logs/{name}/version_0")
    events.Reload()
    if "val/acc" not in events.Tags()["scalars"]:
        print(name, "no validation logged")
        continue
    accs = [e.value for e in events.Scalars("val/acc")]
    every = " ".join(f"{a:.3f}" for a in accs[4::5])
    print(f"{name}: {len(accs)} epochs, best val/acc {max(accs):.4f} at epoch {accs.index(max(accs))}; every 5th: {every}")
PY
if [ -n "$OUTPUT" ]; then
  # the small files of each run (no checkpoints): enough for the report and TensorBoard
  find lightning_logs -type f ! -name "*.ckpt" -print0 | xargs -0 cp --parents -t "$OUTPUT"
fi
