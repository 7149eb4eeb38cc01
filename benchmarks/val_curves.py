"""Validation accuracy after each epoch, the seconds between epoch ends, and the time a run took, of run
folders, read with TensorBoard's own reader: ``python benchmarks/val_curves.py results/runs/model1/version_0 ...``.

Each sitting of fit (a run continued from ``last.ckpt`` has several), test or validate writes its own event
file, and the hours between sittings are not part of the run: the time taken is summed over the event files, each
from its creation to its last event.
"""

import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader


def sittings(run: str | Path) -> list[tuple[float, float]]:
    """(first, last) wall time of each event file in the run folder, in the order they were written."""
    spans = []
    for path in Path(run).glob("events.out.tfevents.*"):
        times = [event.wall_time for event in EventFileLoader(str(path)).Load()]
        if times:
            spans.append((min(times), max(times)))
    return sorted(spans)


def main(runs: list[str]) -> None:
    for run in runs:
        events = EventAccumulator(run)
        events.Reload()
        accs = " ".join(f"{100 * e.value:.1f}" for e in events.Scalars("val/acc"))
        ends = [e.wall_time for e in events.Scalars("train/loss_epoch")]
        seconds = " ".join(f"{b - a:.0f}" for a, b in zip(ends, ends[1:], strict=False))
        spans = sittings(run)
        taken = sum(last - first for first, last in spans)
        print(f"{run}: val/acc % by epoch {accs}; s between epoch ends {seconds}")
        print(f"{run}: {taken / 3600:.2f} h ({taken:.0f} s) of fit, test and validate in {len(spans)} sittings")


if __name__ == "__main__":
    main(sys.argv[1:])
