"""Checkpoint files: safe loads with clear errors, atomic writes, the best-by-``val/acc`` checkpoint, and
``last.ckpt`` kept fresh at every boundary a resume can start from."""

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from cifar_lightning.atomic import atomic_write
from cifar_lightning.errors import CifarError, not_a_file
from cifar_lightning.runs.folders import BEST_PATTERN, LAST


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)``: a checkpoint cannot run code; a bad file is one CifarError."""
    path = Path(path)
    if not path.is_file():
        raise CifarError(f"checkpoint {path} {not_a_file(path)}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CifarError(f"{path} is not a readable checkpoint (truncated or not a checkpoint: {reason})") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "pytorch-lightning_version"} <= checkpoint.keys():
        raise CifarError(f"{path} is not a Lightning checkpoint (no state_dict or version): pass one that fit wrote")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically (temporary file, fsync, rename) and loaded with ``weights_only=True``."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    @override
    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with epochs counted from 1 in file names, as everywhere else in the package,
    and a closing line that names the best checkpoint."""

    @override
    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.best_model_path:
            match = BEST_PATTERN.search(self.best_model_path)
            epoch = int(match[1]) if match else "?"
            print(
                f"best checkpoint: {self.best_model_path} (epoch {epoch}, val/acc {float(self.best_model_score):.4f})"
            )


class LastCheckpoint(Checkpoint):
    """``last.ckpt``: the state at the end of every epoch, at the end of training, every ``every_n_train_steps``
    training steps, where ``trainer.max_steps`` stops a run, and when SIGTERM or Ctrl-C stops one.

    It is a ``Checkpoint`` so that Lightning calls its ``on_train_epoch_end`` after the module's, when the
    epoch's validation and logging are done: a resume from it starts the next epoch cleanly. A step that ends
    an epoch is left to that hook (a checkpoint written before validation resumes as a finished epoch whose
    validation never ran). It writes next to the best checkpoints, in the run folder.
    """

    def __init__(self, every_n_train_steps: int = 500) -> None:
        """
        Args:
            every_n_train_steps: also write ``last.ckpt`` every this many training steps (0: only at epoch ends).
        """
        self.every_n_train_steps = every_n_train_steps
        self._saved_at: int | None = None

    def path(self, trainer: L.Trainer) -> Path | None:
        best = trainer.checkpoint_callback
        return Path(best.dirpath) / LAST if isinstance(best, ModelCheckpoint) and best.dirpath else None

    def save(self, trainer: L.Trainer) -> None:
        path = self.path(trainer)
        if path is None or trainer.sanity_checking or self._saved_at == trainer.global_step:
            return
        trainer.save_checkpoint(path)
        self._saved_at = trainer.global_step

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Every N steps, and where ``trainer.max_steps`` stops a run mid-epoch (so a resume with more steps
        continues that epoch instead of starting the next)."""
        if batch_idx + 1 >= trainer.num_training_batches:
            return
        every, step = self.every_n_train_steps, trainer.global_step
        if (every > 0 and step % every == 0) or step == trainer.max_steps:
            self.save(trainer)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """SIGTERM (and Ctrl-C, which the CLI routes to Lightning's SIGTERM handler) stop after a whole batch."""
        if isinstance(exception, SIGTERMException):
            self.save(trainer)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {}
