"""Callbacks for the Ray Tune tests, imported by class path in Ray's worker processes (tests/ is on their path)."""

import os
import time
from pathlib import Path

import lightning as L


class DieOnce(L.Callback):
    """Kill the whole process after training step ``step``, the first time only (``marker`` remembers it), as a
    machine that fails would: no exception, no cleanup, no checkpoint of the moment."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            os._exit(1)


class Slow(L.Callback):
    """Sleep after every training step, so that a run of generated data cannot finish before a signal lands."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: object) -> None:
        time.sleep(self.seconds)
