#!/usr/bin/env bash
# Land finished, tested runs into results/: copy their folders without checkpoints, regenerate the report, copy
# the report's study table into the README, and print each run's numbers and wall time for results/README.md.
# Usage (from the repository that takes the results): [TIMINGS=LOG] benchmarks/land-run.sh LOG_DIR MODEL/VERSION ...
#   e.g. TIMINGS=../longruns-ctl/timings.log benchmarks/land-run.sh ../longruns/lightning_logs model4/version_1
# TIMINGS, the chains' log (cpu-runs.sh), counts the runs' pauses apart from their running time.
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=$1
shift
for run in "$@"; do
  [ -f "$LOGS/$run/test_results.json" ] || { echo "land-run.sh: $LOGS/$run has no test_results.json" >&2; exit 1; }
  [ ! -e "results/runs/$run" ] || { echo "land-run.sh: results/runs/$run exists" >&2; exit 1; }
done
for run in "$@"; do
  for f in "$LOGS/$run"/{config.yaml,hparams.yaml,test_results.json} "$LOGS/$run"/events.out.tfevents.*; do
    install -D -m 644 "$f" "results/runs/$run/$(basename "$f")"
  done
done
python -m cifar_lightning report --log_dir results/runs --out results
python - <<'PY'
from pathlib import Path

readme, report = Path("README.md"), Path("results/report.md").read_text()
section = report.split("## The study's table, reproduced")[1].split("\n## ")[0]
table = [line for line in section.splitlines() if line.startswith("|")]
lines = readme.read_text().splitlines(keepends=True)
start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == table[0])
lines[start : start + len(table)] = [line + "\n" for line in table]
readme.write_text("".join(lines))
PY
for run in "$@"; do
  python - "results/runs/$run" <<'PY'
import json
import sys
from pathlib import Path

from cifar_lightning.runs.folders import load_run

path = Path(sys.argv[1])
run = load_run(path.parent.name, path)
acc, loss, epoch = run.best()
test = json.loads((run.path / "test_results.json").read_text())
print(f"{run.path}: seed {run.seed}, {run.precision}, {run.epochs_done} epochs, best val {100 * acc:.2f}% "
      f"(loss {loss:.4f}) at epoch {epoch}, test {100 * test['test/acc']:.2f}%")
PY
  python benchmarks/val_curves.py ${TIMINGS:+--timings "$TIMINGS"} "results/runs/$run" | grep -E "sittings" || true
done
