"""Callbacks that make a run fail on purpose, imported by class path in the runs the tests start as processes
(tests/ is on their path)."""

import os
import signal
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


class KillAt(L.Callback):
    """SIGKILL the process after training step ``$KILL_AT_STEP`` (never where it is unset): the run ends there,
    between two checkpoints. The step comes from the environment so that the resumed run's config, which must
    match the killed one's, can name the same callback."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if str(trainer.global_step) == os.environ.get("KILL_AT_STEP"):
            os.kill(os.getpid(), signal.SIGKILL)
