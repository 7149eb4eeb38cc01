"""benchmarks/val_curves.py: a run continued over several sittings is timed without the hours between them."""

import val_curves
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter


def write_sitting(folder, start: float, epochs: dict[int, tuple[float, float]]) -> None:
    """One event file as a fit writes it: opened at ``start``, then for each epoch its end time and val/acc."""
    with open(folder / f"events.out.tfevents.{int(start)}.host.1.0", "wb") as file:
        records = RecordWriter(file)
        records.write(Event(wall_time=start, file_version="brain.Event:2").SerializeToString())
        for step, (time, acc) in epochs.items():
            for tag, value in (("train/loss_epoch", 1.0), ("val/acc", acc)):
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
                records.write(Event(wall_time=time, step=step, summary=summary).SerializeToString())


def test_the_time_between_sittings_is_not_counted(tmp_path, capsys):
    write_sitting(tmp_path, 1000.0, {99: (1100.0, 0.5), 199: (1200.0, 0.6)})
    write_sitting(tmp_path, 90000.0, {299: (90150.0, 0.7)})  # continued the next day

    assert val_curves.sittings(tmp_path) == [(1000.0, 1200.0), (90000.0, 90150.0)]
    val_curves.main([str(tmp_path)])
    curves, taken = capsys.readouterr().out.splitlines()
    assert "val/acc % by epoch 50.0 60.0 70.0" in curves
    assert "s between epoch ends 100 88950" in curves
    assert taken.endswith("0.10 h (350 s) of fit, test and validate in 2 sittings")
