"""Validation accuracy after each epoch, the seconds between epoch ends, and the time a run took, of run
folders, read with TensorBoard's own reader: ``python benchmarks/val_curves.py [--timings LOG] RUN ...``.

Each sitting of fit (a run continued from ``last.ckpt`` has several), test or validate writes its own event
file, and the hours between sittings are not part of the run: the time taken is summed over the event files, each
from its creation to its last event. With ``--timings``, a chains' timings log (``benchmarks/cpu-runs.sh``), the
minutes a sitting's process was stopped (its ``PAUSE (SIGSTOP) PID ...`` to ``RESUME (SIGCONT) PID ...`` lines)
are counted apart: the event file's name holds the process id that wrote it.
"""

import argparse
from datetime import datetime
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader


def spans(run: str | Path) -> list[tuple[float, float, int]]:
    """(first, last) wall time and writing process id of each event file in the run folder, in written order."""
    found = []
    for path in Path(run).glob("events.out.tfevents.*"):
        times = [event.wall_time for event in EventFileLoader(str(path)).Load()]
        if times:
            found.append((min(times), max(times), int(path.name.split(".")[-2])))  # ...<host>.<pid>.<n>
    return sorted(found)


def pauses(timings: str | Path) -> list[tuple[float, float, int]]:
    """(start, end, process id) of each stop a timings log records, from its PAUSE line to the RESUME line that
    names the same process."""
    stopped: dict[int, float] = {}
    found = []
    for line in Path(timings).read_text().splitlines():
        words = line.split()
        if len(words) < 3 or words[1] not in ("PAUSE", "RESUME"):
            continue
        when = datetime.fromisoformat(words[0].replace("Z", "+00:00")).timestamp()
        named = words[3 : words.index("for") if "for" in words else None]  # the ids, before the reason
        pids = {int(word) for word in named if word.isdigit()}
        if words[1] == "PAUSE":
            stopped.update(dict.fromkeys(pids, when))
        else:
            found += [(stopped.pop(pid), when, pid) for pid in sorted(pids) if pid in stopped]
    return found


def paused_seconds(sittings: list[tuple[float, float, int]], stops: list[tuple[float, float, int]]) -> float:
    """The part of the sittings their processes spent stopped."""
    return sum(
        max(0.0, min(last, end) - max(first, start))
        for first, last, pid in sittings
        for start, end, stopped in stops
        if stopped == pid
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timings", help="a chains' timings log, to count the runs' pauses apart")
    parser.add_argument("runs", nargs="+", help="run folders (MODEL/version_N)")
    args = parser.parse_args(argv)
    stops = pauses(args.timings) if args.timings else []
    for run in args.runs:
        events = EventAccumulator(run)
        events.Reload()
        accs = " ".join(f"{100 * e.value:.1f}" for e in events.Scalars("val/acc"))
        ends = [e.wall_time for e in events.Scalars("train/loss_epoch")]
        seconds = " ".join(f"{b - a:.0f}" for a, b in zip(ends, ends[1:], strict=False))
        sittings = spans(run)
        taken = sum(last - first for first, last, _ in sittings)
        print(f"{run}: val/acc % by epoch {accs}; s between epoch ends {seconds}")
        line = f"{run}: {taken / 3600:.2f} h ({taken:.0f} s) of fit, test and validate in {len(sittings)} sittings"
        if args.timings:
            stopped = paused_seconds(sittings, stops)
            line += f", of which {stopped / 60:.0f} min paused: {(taken - stopped) / 3600:.2f} h running"
        print(line)


if __name__ == "__main__":
    main()
