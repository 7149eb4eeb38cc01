#!/usr/bin/env bash
# Land a finished, tested run into results/: copy its folder without checkpoints, regenerate the report, copy the
# report's study table into the README, and print the run's numbers and wall time for results/README.md.
# Usage (from the repository that takes the results): benchmarks/land-run.sh LOG_DIR MODEL VERSION
#   e.g. benchmarks/land-run.sh ../longruns/lightning_logs model3 version_0
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=$1 MODEL=$2 VERSION=$3
run="$LOGS/$MODEL/$VERSION"
[ -f "$run/test_results.json" ] || { echo "land-run.sh: $run has no test_results.json: test it first" >&2; exit 1; }
[ ! -e "results/runs/$MODEL/$VERSION" ] || { echo "land-run.sh: results/runs/$MODEL/$VERSION exists" >&2; exit 1; }
for f in "$run"/{config.yaml,hparams.yaml,test_results.json} "$run"/events.out.tfevents.*; do
  install -D -m 644 "$f" "results/runs/$MODEL/$VERSION/$(basename "$f")"
done
python -m cifar_lightning report --log_dir results/runs --out results
python - <<'EOF'
from pathlib import Path

readme, report = Path("README.md"), Path("results/report.md").read_text()
section = report.split("## The study's table, reproduced")[1].split("\n## ")[0]
table = [line for line in section.splitlines() if line.startswith("|")]
lines = readme.read_text().splitlines(keepends=True)
start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == table[0])
lines[start : start + len(table)] = [line + "\n" for line in table]
readme.write_text("".join(lines))
EOF
python - "$MODEL" "results/runs/$MODEL/$VERSION" <<'EOF'
import json
import sys
from pathlib import Path

from cifar_lightning.runs.folders import load_run

run = load_run(sys.argv[1], Path(sys.argv[2]))
acc, loss, epoch = run.best()
test = json.loads((run.path / "test_results.json").read_text())
print(f"{run.path}: seed {run.seed}, {run.precision}, {run.epochs_done} epochs, best val {100 * acc:.2f}% "
      f"(loss {loss:.4f}) at epoch {epoch}, test {100 * test['test/acc']:.2f}%")
EOF
python benchmarks/val_curves.py "results/runs/$MODEL/$VERSION" | grep -i -E "sittings|h \(" || true
