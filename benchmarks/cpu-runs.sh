#!/usr/bin/env bash
# Long runs on a CPU machine that stops between working periods: one chain of `study` runs, one thread, pinned
# to one core, each run fitted and then its best checkpoint tested. Start one chain per core, in the background,
# from a git worktree pinned at a commit. After a stop, the same command continues: a finished run is skipped and
# a stopped one resumes from its last.ckpt. Every start and end goes to TIMINGS, with the CPU it ran on.
# Usage: benchmarks/cpu-runs.sh NAME CORE TIMINGS CONFIG:SEED[:PRECISION] ...
#   e.g. (nohup setsid benchmarks/cpu-runs.sh A 0 ../timings.log model3:0 model4:1:bf16-mixed >/dev/null 2>&1 &)
#   Each run's output goes to lightning_logs/NAME-CONFIG-SEED[-PRECISION].log.
# Other work beside the chains: lower the priority of its shell's autogroup (`echo 19 > /proc/$$/autogroup`);
# with autogroup scheduling on, `nice` alone does not lower a process against another session's (BENCHMARKS.md).
set -uo pipefail
cd "$(dirname "$0")/.."
NAME=$1 CORE=$2 TIMINGS=$3
shift 3
mkdir -p lightning_logs
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$TIMINGS"; }
log "START chain $NAME on core $CORE at $(git rev-parse --short HEAD), $(lscpu | sed -n 's/^Model name: *//p'): $*"
for run in "$@"; do
  IFS=: read -r config seed precision <<<"$run"
  args="--trainer.enable_progress_bar=false${precision:+ --trainer.precision=$precision}"
  label="$config seed $seed${precision:+ $precision}"
  log "START $label (chain $NAME)"
  OMP_NUM_THREADS=1 taskset -c "$CORE" python -m cifar_lightning study --configs "configs/$config.yaml" \
    --seeds "$seed" --parallel false "--args=$args" \
    >>"lightning_logs/$NAME-$config-$seed${precision:+-$precision}.log" 2>&1
  code=$?
  log "END $label rc $code (chain $NAME)"
  [ $code -eq 0 ] || exit $code
done
log "END chain $NAME"
