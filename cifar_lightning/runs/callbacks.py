"""Callbacks: everything a stage leaves behind besides checkpoints, so ``Trainer.fit/test/predict`` from
Python write what the command line writes: Ctrl-C handling, TensorBoard figures and HPARAMS, the test
result beside its run, and the prediction CSV."""

import csv
import functools
import hashlib
import io
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse.typing import PositiveInt
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.loggers import TensorBoardLogger

from cifar_lightning.atomic import atomic_write, in_folder
from cifar_lightning.errors import CifarError
from cifar_lightning.runs.folders import CONFIG_FILE, TEST_RESULTS, best_in, hyperparameters, read_file, run_of
from cifar_lightning.training.data import CLASSES, VAL_SIZE

HPARAM_METRICS = ("hparams/best_val_acc", "hparams/val_loss_at_best", "hparams/test_acc")


def _tensorboards(trainer: L.Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


class CtrlC(L.Callback):
    """Ctrl-C during fit stops like SIGTERM: after the current batch, with ``last.ckpt`` written.

    SIGINT is routed to the SIGTERM handler the Trainer installed, so Lightning's own machinery stops the
    loop. A second Ctrl-C raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self._previous: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        lightning_handler = signal.getsignal(signal.SIGTERM)
        if not callable(lightning_handler) or threading.current_thread() is not threading.main_thread():
            return  # no handler of Lightning's, or not the main thread (a Ray Tune trial): signals are not ours

        def stop_after_batch(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
            print("\nCtrl-C: stopping after this batch (press again to stop at once)", file=sys.stderr)
            lightning_handler(signum, frame)

        self._previous = signal.signal(signal.SIGINT, stop_after_batch)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class TensorBoardFigures(L.Callback):
    """TensorBoard: a labelled grid of training images when fit starts, the run's hyperparameters with
    its best ``val/acc``, the ``val/loss`` there and (once tested) ``test/acc`` as HPARAMS metrics."""

    def __init__(self, samples_per_class: PositiveInt = 8) -> None:
        """
        Args:
            samples_per_class: training images per class in the sample grid.
        """
        self.samples_per_class = samples_per_class
        self.best_acc = -math.inf

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resume (a fit from a checkpoint) has them in its run already. Here, before Lightning writes
        # hparams.yaml, the global step is still 0 for a resume too (Lightning 2.6 restores the loops after this
        # hook), so the checkpoint path is what tells.
        if not trainer.is_global_zero or not _tensorboards(trainer) or trainer.ckpt_path is not None:
            return
        from cifar_lightning.runs.figures import samples_figure

        for logger in _tensorboards(trainer):
            logger.log_hyperparams(run_hyperparameters(trainer, pl_module), dict.fromkeys(HPARAM_METRICS, math.nan))
        splits = getattr(trainer.datamodule, "splits", {})
        if "train" in splits:
            images, labels = (t.cpu() for t in splits["train"])
            figure = samples_figure(images, labels, self.samples_per_class)
            for logger in _tensorboards(trainer):
                logger.experiment.add_figure("samples/training_images", figure, global_step=0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or trainer.state.fn != "fit" or "val/acc" not in metrics:
            return
        acc = float(metrics["val/acc"])
        if acc > self.best_acc:
            self.best_acc = acc
            best = {"hparams/best_val_acc": acc, "hparams/val_loss_at_best": float(metrics["val/loss"])}
            for logger in _tensorboards(trainer):
                logger.log_metrics(best, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"best_acc": self.best_acc}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_acc = state_dict["best_acc"]


def run_hyperparameters(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """What this fit trains with, in a config's shape, read by :func:`runs.hyperparameters` like the report."""
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    datamodule = trainer.datamodule
    config = {
        "seed_everything": getattr(datamodule, "seed", None),
        "trainer": {"max_epochs": trainer.max_epochs},
        "data": {"batch_size": getattr(datamodule, "batch_size", None)},
        "model": {"dropout": pl_module.hparams.get("dropout", 0.0)},
    }
    if optimizer is not None:
        path = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
        config["model"]["optimizer"] = {"class_path": path, "init_args": dict(optimizer.defaults)}
    plain = {bool: bool, int: int, float: float, str: str}  # jsonargparse's PositiveInt etc. are int subclasses
    return {
        k: next(t(v) for base, t in plain.items() if isinstance(v, base))
        for k, v in hyperparameters(config).items()
        if isinstance(v, int | float | str)
    }


class TestResults(L.Callback):
    """After ``test``: a record of what was tested and how it did (accuracy, loss, calibration, per-class accuracy,
    confusion matrix), ``confusion_matrix.png`` and ``reliability.png`` in the tested checkpoint's run folder,
    where the report finds them; the figures also go to TensorBoard.

    The record says what was tested: the checkpoint and whether it is its run's best, the number of images and
    whether that is the whole test split, the data file (path and SHA-256), the precision and test-time
    augmentation. Only the run's study result, a full test of its best checkpoint on the data it trained on, is
    ``test_results.json`` (``test_results_tta.json`` with TTA); any other test is kept beside it under a name that
    says how it differs (``test_results-last-200images.json``) and never replaces it.

    It reads what the module's ``test_step`` returns (the logits) and its ``test_confusion`` metric."""

    def __init__(self) -> None:
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._predictions: tuple[torch.Tensor, torch.Tensor] | None = None  # the test split's logits and labels
        self._lines: list[str] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs, self._predictions = [], None

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, torch.Tensor):
            self._outputs.append((outputs.detach().float().cpu(), batch[1].cpu()))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Calibration: the expected calibration error (15 bins) of the test predictions, and again after
        temperature scaling fitted on the validation split only."""
        if trainer.world_size > 1 or not self._outputs:  # each rank holds a share: not calibrated here
            return
        from cifar_lightning.training import calibration

        logits, labels = (torch.cat(t) for t in zip(*self._outputs, strict=True))
        self._outputs, self._predictions = [], (logits, labels)
        pl_module.log("test/ece", calibration.expected_calibration_error(logits, labels))
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "val_dataloader"):
            return
        evaluate = getattr(pl_module, "eval_logits", pl_module)
        with torch.no_grad():
            val = [(evaluate(x).float().cpu(), y.cpu()) for x, y in datamodule.val_dataloader()]
        temperature = calibration.fit_temperature(*(torch.cat(t) for t in zip(*val, strict=True)))
        pl_module.log("test/temperature", temperature)
        scaled = calibration.expected_calibration_error(logits / temperature, labels)
        pl_module.log("test/ece_temperature_scaled", scaled)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from cifar_lightning.runs.figures import confusion_figure
        from cifar_lightning.training.classifier import per_class_accuracy

        kept = ("test/acc", "test/loss", "test/ece", "test/temperature", "test/ece_temperature_scaled")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in kept}
        confusion = pl_module.test_confusion.compute().cpu()
        ckpt = Path(trainer.ckpt_path) if trainer.ckpt_path else None
        run = (run_of(ckpt) if ckpt else None) or Path(trainer.log_dir or trainer.default_root_dir)
        tta = bool(getattr(pl_module, "tta", False))
        record = {"checkpoint": str(ckpt) if ckpt else None, **_what_was_tested(trainer, ckpt, run, confusion, tta)}
        record |= {**metrics, "per_class_acc": per_class_accuracy(confusion).tolist(), "confusion": confusion.tolist()}
        if self._predictions is not None and record["full"]:
            record |= _slice_accuracy(*self._predictions, getattr(trainer.datamodule, "val_size", VAL_SIZE))
        study_result = record["best"] and record["full"] and record["same_data_as_fit"]
        suffix = ("_tta" if tta else "") if study_result else "-" + _how_it_differs(record, ckpt)
        title = f"{run.parent.name}/{run.name}" + (" with TTA" if tta else "")
        results = run / f"{TEST_RESULTS.removesuffix('.json')}{suffix}.json"
        atomic_write(results, lambda f: f.write(json.dumps(record, indent=2)), mode="w")
        figure = confusion_figure(confusion, f"{title}: test confusion matrix")
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=100)
        image = run / f"confusion_matrix{suffix}.png"
        atomic_write(image, lambda f: f.write(png.getvalue()))
        if self._predictions is not None:
            from cifar_lightning.runs.figures import reliability_figure
            from cifar_lightning.training.calibration import reliability

            diagram = reliability_figure(reliability(*self._predictions), f"{title}: test reliability")
            png = io.BytesIO()
            diagram.savefig(png, format="png", dpi=100)
            atomic_write(run / f"reliability{suffix}.png", lambda f: f.write(png.getvalue()))
            for logger in _tensorboards(trainer):
                logger.experiment.add_figure(f"test/reliability{suffix}", diagram, global_step=trainer.global_step)
        for logger in _tensorboards(trainer):
            logger.experiment.add_figure(f"test/confusion_matrix{suffix}", figure, global_step=trainer.global_step)
            if "test/acc" in metrics and not tta and study_result:  # HPARAMS compare runs tested alike
                logger.log_metrics({"hparams/test_acc": metrics["test/acc"]}, step=trainer.global_step)
        self._lines = [
            f"test accuracy {metrics.get('test/acc', math.nan):.4f}, loss {metrics.get('test/loss', math.nan):.4f}"
        ]
        if "test/ece" in metrics:
            scaled = metrics.get("test/ece_temperature_scaled", math.nan)
            self._lines.append(
                f"expected calibration error {metrics['test/ece']:.4f}; {scaled:.4f} after temperature scaling"
            )
        if not study_result:
            self._lines.append(f"not the run's study result ({_how_it_differs(record, ckpt)}): kept beside it")
        self._lines.append(f"result saved to {results}, confusion matrix to {image}")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """After the progress bar's last line."""
        for line in self._lines if stage == "test" else []:
            print(line)
        self._lines = []


def _what_was_tested(
    trainer: L.Trainer, ckpt: Path | None, run: Path, confusion: torch.Tensor, tta: bool
) -> dict[str, Any]:
    datamodule = trainer.datamodule
    npz = getattr(datamodule, "npz_path", None)
    images, split = int(confusion.sum()), getattr(datamodule, "splits", {}).get("test")
    trained = read_file(run / CONFIG_FILE, yaml.safe_load) or {}
    trained_dir = (trained.get("data") or {}).get("data_dir")
    return {
        "best": ckpt is not None and ckpt.resolve() in _best_checkpoints(trainer, ckpt),
        "images": images,
        "full": split is not None and images == len(split[1]),
        "data_file": str(npz.resolve()) if npz else None,
        "data_sha256": _sha256(npz) if npz and npz.is_file() else None,
        "same_data_as_fit": trained_dir is None
        or (npz is not None and Path(trained_dir).resolve() == npz.parent.resolve()),
        "precision": str(trainer.precision),
        "tta": tta,
    }


def _slice_accuracy(logits: torch.Tensor, labels: torch.Tensor, size: int) -> dict[str, Any]:
    """Accuracy on each disjoint slice of ``size`` test images, in the test set's order: how far a validation set
    of that size can put a model from its accuracy on all of them."""
    correct = (logits.argmax(1) == labels).float()
    slices = [correct[i : i + size].mean().item() for i in range(0, len(correct) - size + 1, size)]
    return {"slice_size": size, "slice_acc": slices}


def _best_checkpoints(trainer: L.Trainer, ckpt: Path) -> set[Path]:
    """The run's best checkpoint by its file name and, after a fit in this process, by the checkpoint callback."""
    found = {best_in(ckpt.parent), Path(getattr(trainer.checkpoint_callback, "best_model_path", "") or "")}
    return {p.resolve() for p in found if p is not None and p.name}


def _how_it_differs(record: dict[str, Any], ckpt: Path | None) -> str:
    """How a test differs from the run's study result, as a file-name part: ``last-200images-tta``."""
    parts = [] if record["best"] else [ckpt.stem if ckpt else "no-checkpoint"]
    parts += [] if record["full"] else [f"{record['images']}images"]
    parts += [] if record["same_data_as_fit"] else [f"data-{(record['data_sha256'] or 'unknown')[:8]}"]
    return "-".join([*parts, *(["tta"] if record["tta"] else [])])


@functools.cache
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class PredictionWriter(BasePredictionWriter):
    """Writes each file's class, its probability and all ten probabilities to a CSV, then prints them
    (after the progress bar has finished)."""

    def __init__(self, output: str = "predictions.csv") -> None:
        """
        Args:
            output: the CSV to write, relative to the working folder, or a folder to write ``predictions.csv`` in;
                an existing file is replaced (and said so).
        """
        super().__init__(write_interval="epoch")
        self.output = Path(output)
        self._lines: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict" and trainer.world_size > 1:  # each rank would hold a share of the files
            raise CifarError("predict runs on one device: set --trainer.devices 1 (and no strategy)")

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        files = trainer.datamodule.predict_files
        probs = torch.cat(predictions).float().cpu() if predictions else torch.empty(0, len(CLASSES))
        rows, self._lines = [], []
        for file, row in zip(files, probs.tolist(), strict=True):
            best = max(range(len(CLASSES)), key=row.__getitem__)
            self._lines.append(f"{file}: {CLASSES[best]} ({row[best]:.1%})")
            rows.append([str(file), CLASSES[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])
        output = in_folder(self.output, "predictions.csv")
        replaced = output.exists()

        def write(f: Any) -> None:
            writer = csv.writer(f)
            writer.writerow(["file", "class", "probability", *CLASSES])
            writer.writerows(rows)

        atomic_write(output, write, mode="w")
        note = " (replaced the existing file)" if replaced else ""
        self._lines.append(f"wrote {len(rows)} predictions to {output.resolve()}{note}")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """After every callback's ``on_predict_end``, so the lines come after the progress bar's last one."""
        for line in self._lines if stage == "predict" else []:
            print(line)
        self._lines = []
