"""Validation accuracy after each epoch, and the seconds between epoch ends, of run folders, read with
TensorBoard's own reader: ``python benchmarks/val_curves.py results/runs/model1/version_0 ...``."""

import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(runs: list[str]) -> None:
    for run in runs:
        events = EventAccumulator(run)
        events.Reload()
        accs = " ".join(f"{100 * e.value:.1f}" for e in events.Scalars("val/acc"))
        ends = [e.wall_time for e in events.Scalars("train/loss_epoch")]
        seconds = " ".join(f"{b - a:.0f}" for a, b in zip(ends, ends[1:], strict=False))
        print(f"{run}: val/acc % by epoch {accs}; s between epoch ends {seconds}")


if __name__ == "__main__":
    main(sys.argv[1:])
