"""benchmarks/val_curves.py: a run continued over several sittings is timed without the hours between them."""

import val_curves
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter


def write_sitting(folder, start: float, epochs: dict[int, tuple[float, float]], pid: int = 1) -> None:
    """One event file as a fit writes it: opened at ``start``, then for each epoch its end time and val/acc."""
    with open(folder / f"events.out.tfevents.{int(start)}.host.name.{pid}.0", "wb") as file:
        records = RecordWriter(file)
        records.write(Event(wall_time=start, file_version="brain.Event:2").SerializeToString())
        for step, (time, acc) in epochs.items():
            for tag, value in (("train/loss_epoch", 1.0), ("val/acc", acc)):
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
                records.write(Event(wall_time=time, step=step, summary=summary).SerializeToString())


def test_the_time_between_sittings_is_not_counted(tmp_path, capsys):
    write_sitting(tmp_path, 1000.0, {99: (1100.0, 0.5), 199: (1200.0, 0.6)})
    write_sitting(tmp_path, 90000.0, {299: (90150.0, 0.7)})  # continued the next day

    assert val_curves.spans(tmp_path) == [(1000.0, 1200.0, 1), (90000.0, 90150.0, 1)]
    val_curves.main([str(tmp_path)])
    curves, taken = capsys.readouterr().out.splitlines()
    assert "val/acc % by epoch 50.0 60.0 70.0" in curves
    assert "s between epoch ends 100 88950" in curves
    assert taken.endswith("0.10 h (350 s) of fit, test and validate in 2 sittings")


def test_pauses_of_the_sittings_own_processes_are_counted_apart(tmp_path, capsys):
    write_sitting(tmp_path, 1000.0, {99: (1100.0, 0.5), 199: (1200.0, 0.6)}, pid=41)
    write_sitting(tmp_path, 90000.0, {299: (90150.0, 0.7)}, pid=42)
    log = tmp_path / "timings.log"
    log.write_text(
        "1970-01-01T00:16:40Z START model4 seed 1 (chain C)\n"
        "1970-01-01T00:16:50Z PAUSE (SIGSTOP) 41 7  for a CI run of 2026\n"  # 1010 s: 41 and another run
        "1970-01-01T00:17:20Z RESUME (SIGCONT) 41 7\n"  # 30 s of the first sitting
        "1970-01-01T00:18:00Z PAUSE (SIGSTOP) 7  for a benchmark\n"  # another run's pause
        "1970-01-01T00:18:10Z RESUME (SIGCONT) 7\n"
        "1970-01-02T01:01:30+00:00 PAUSE (SIGSTOP) fits 42  for a benchmark\n"  # 90090 s
        "1970-01-02T01:05:00+00:00 RESUME (SIGCONT) fits 42\n"  # past the sitting's end (90150): 60 s of it
    )
    assert val_curves.pauses(log) == [(1010.0, 1040.0, 7), (1010.0, 1040.0, 41), (1080.0, 1090.0, 7),
                                      (90090.0, 90300.0, 42)]  # fmt: skip
    val_curves.main(["--timings", str(log), str(tmp_path)])
    taken = capsys.readouterr().out.splitlines()[1]
    assert taken.endswith(
        "0.10 h (350 s) of fit, test and validate in 2 sittings, of which 2 min paused: 0.07 h running"
    )
