"""Throughput of a study's trials side by side: 1, 2, 4, ... Ray Tune trials sharing this machine's CPUs or one
GPU, each a real ``study`` run; prints total training images/s and each trial's epoch time, as a Markdown table.

Usage (repository root, with the tune extra):
    python benchmarks/trials.py --data.data_dir data --counts 1 2                  # CPU: the cores split between trials
    python benchmarks/trials.py --data.data_dir data --counts 1 2 4 8 --gpu --config configs/model4.yaml
Each count runs in a fresh folder and a fresh Ray; epoch times are the median gap between epoch ends, so
start-up and the test after each fit do not count.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from cifar_lightning.runs.cli import config_location
from cifar_lightning.runs.folders import model_runs


def run_trials(
    config: Path, data_dir: Path, count: int, epochs: int, batches: int, gpu: bool, extra: str
) -> list[float]:
    """Epoch seconds of each of ``count`` concurrent trials (seeds 0..count-1)."""
    cpus, gpus = (1, 1 / count) if gpu else (max(1, (os.cpu_count() or 1) // count), 0)
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(config.parent, Path(folder) / "configs")
        args = f"--data.data_dir={data_dir.resolve()} --data.download=false --trainer.limit_train_batches={batches}"
        args += f" --trainer.enable_progress_bar=false {extra}"
        command = [sys.executable, "-m", "cifar_lightning", "study", f"--configs=configs/{config.name}", "--seeds",
                   *map(str, range(count)), f"--epochs={epochs}", "--parallel=true",
                   f"--cpus_per_trial={cpus}", f"--gpus_per_trial={gpus}", f"--args={args}"]  # fmt: skip
        subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        save_dir, name, _ = config_location(Path(folder) / "configs" / config.name, tuple(args.split()))
        runs = model_runs(Path(folder) / save_dir, name)
        return [r.epoch_seconds for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data.data_dir", dest="data_dir", type=Path, default=Path("data"))
    parser.add_argument("--config", type=Path, default=Path("configs/model1.yaml"))
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=150, help="training batches per epoch")
    parser.add_argument("--gpu", action="store_true", help="trials share one GPU (else the CPU cores)")
    parser.add_argument("--args", default="", help="more fit options for every trial, as one string")
    args = parser.parse_args()
    batch_size = (yaml.safe_load(args.config.read_text()).get("data") or {}).get("batch_size", 32)
    images = args.batches * batch_size
    print(f"{args.config}, {args.epochs} epochs of {args.batches} batches of {batch_size} per trial, "
          f"{'one GPU' if args.gpu else f'{os.cpu_count()} CPU cores'}\n")  # fmt: skip
    print("| trials | per trial | epoch s (each trial) | total training images/s | vs 1 trial |")
    print("|---|---|---|---|---|")
    base = None
    for count in args.counts:
        seconds = run_trials(args.config, args.data_dir, count, args.epochs, args.batches, args.gpu, args.args)
        total = sum(images / s for s in seconds)
        base = base or total
        share = f"{1 / count:.3g} GPU" if args.gpu else f"{max(1, (os.cpu_count() or 1) // count)} CPU"
        each = ", ".join(f"{s:.2f}" for s in seconds)
        median = statistics.median(seconds)
        print(f"| {count} | {share} | {each} (median {median:.2f}) | {total:,.0f} | {total / base:.2f} |")


if __name__ == "__main__":
    main()
