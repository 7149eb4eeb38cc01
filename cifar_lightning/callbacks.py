"""Callbacks: save a resumable checkpoint on preemption (SIGTERM) or Ctrl-C, write predictions, and add
figures to TensorBoard."""

import csv
import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.data import CLASSES
from cifar_lightning.figures import samples_figure


class Preemption(L.Callback):
    """Ctrl-C is treated like SIGTERM: Lightning stops after the current batch, then ``last.ckpt`` is written.

    Stopping at a batch boundary keeps the saved state exact (no half-applied optimizer step).
    """

    def __init__(self) -> None:
        self.saved: Path | None = None
        self._previous_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        def stop_after_batch(signum: int, frame: Any) -> None:
            trainer.received_sigterm = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

        self._previous_handler = signal.signal(signal.SIGINT, stop_after_batch)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.checkpoint_callback is not None:
            self.saved = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
            trainer.save_checkpoint(self.saved)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None


class PredictionWriter(BasePredictionWriter):
    """Prints each file's class and probability and writes them, with all ten probabilities, to a CSV."""

    def __init__(self, output: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        files = trainer.datamodule.predict_files
        probs = torch.cat(predictions).float().cpu() if predictions else torch.empty(0, len(CLASSES))
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "class", "probability", *CLASSES])
            for file, row in zip(files, probs.tolist(), strict=True):
                best = max(range(len(CLASSES)), key=row.__getitem__)
                print(f"{file}: {CLASSES[best]} ({row[best]:.1%})")
                writer.writerow([str(file), CLASSES[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])
        print(f"wrote {len(files)} predictions to {self.output}", file=sys.stderr)


class TensorBoardFigures(L.Callback):
    """TensorBoard's image tab: a labelled grid of training images when fit starts (``test`` adds the
    confusion matrix it saves next to the run)."""

    def __init__(self, samples_per_class: int = 8) -> None:
        self.samples_per_class = samples_per_class

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        splits = getattr(trainer.datamodule, "splits", {})
        if not trainer.is_global_zero or "train" not in splits or trainer.global_step > 0:
            return
        images, labels = (t.cpu() for t in splits["train"])
        figure = samples_figure(images, labels, self.samples_per_class)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("samples/training_images", figure, global_step=0)
