"""``python -m cifar_lightning {fit,validate,test,predict}``: LightningCLI with the study's defaults.

What LightningCLI does not do, this adds: ``best``/``last`` checkpoints are found among a
model's earlier runs (so ``test --ckpt_path best`` works in a new process and never tests
fresh weights), a resumed or tested run logs into the run folder it came from, values that
parse but make no sense (lr <= 0, NaN) are refused before anything is written, and user
errors end in one line instead of a traceback.
"""

import importlib.util
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.callbacks import PredictionWriter, Preemption, TensorBoardFigures
from cifar_lightning.checkpoints import (
    BEST_FILENAME,
    BEST_PATTERN,
    AtomicCheckpointIO,
    find_checkpoint,
    load_checkpoint,
    run_of,
)
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import CifarError
from cifar_lightning.figures import confusion_figure
from cifar_lightning.module import CIFARClassifier, cuda_graph_blocker, cuda_graph_error, per_class_accuracy
from cifar_lightning.report import TEST_RESULTS

PROGRESS_BAR_REFRESH = 20  # batches between redraws


def progress_bar() -> ProgressBar:
    """Lightning's default bar (Rich where installed, else tqdm), redrawn every ``PROGRESS_BAR_REFRESH`` batches
    instead of every batch: a redraw costs ~0.2 ms of host time, a fifth of a graphed training step on a GPU."""
    bar = RichProgressBar if importlib.util.find_spec("rich") else TQDMProgressBar
    return bar(refresh_rate=PROGRESS_BAR_REFRESH)


class SaveRunConfig(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder for ``fit`` only (a test must not overwrite its run's config),
    and logs the study's hyperparameters to TensorBoard."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        optimizer = self.config.model.optimizer
        init_args = optimizer.init_args if optimizer is not None else Namespace(lr=1e-3, momentum=0.9)
        hparams = {
            "optimizer": optimizer.class_path.rsplit(".", 1)[-1] if optimizer is not None else "SGD",
            "lr": init_args.get("lr"),
            "momentum": init_args.get("momentum", 0.0),
            "batch_size": self.config.data.batch_size,
            "max_epochs": self.config.trainer.max_epochs,
            "dropout": self.config.model.dropout,
            "seed": self.config.seed_everything,
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(hparams)


def _numbers(value: Any, key: str = "") -> list[tuple[str, float]]:
    """Every float in a parsed config, with its dotted key."""
    if isinstance(value, dict | Namespace):
        items = value.items() if isinstance(value, dict) else vars(value).items()
        return [pair for k, v in items for pair in _numbers(v, f"{key}.{k}" if key else k)]
    if isinstance(value, list | tuple):
        return [pair for i, v in enumerate(value) for pair in _numbers(v, f"{key}[{i}]")]
    return [(key, value)] if isinstance(value, float) else []


def validate_config(config: Namespace) -> str | None:
    """What a parser type cannot say: finite numbers, and the optimizer's lr and momentum in range."""
    for key, value in _numbers(config):
        if not math.isfinite(value):
            return f'Parser key "{key}": {value} is not a finite number'
    optimizer = config.model.get("optimizer")
    if optimizer is not None:
        args = optimizer.init_args
        lr, momentum = args.get("lr"), args.get("momentum")
        if isinstance(lr, int | float) and lr <= 0:
            return f'Parser key "model.optimizer.init_args.lr": {lr} must be greater than 0'
        if isinstance(momentum, int | float) and not 0 <= momentum < 1:
            return f'Parser key "model.optimizer.init_args.momentum": {momentum} must be in [0, 1)'
    return None


class CifarCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                "checkpoint.filename": BEST_FILENAME,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        # A second writer of last.ckpt, every N training steps, so a killed run loses little.
        parser.add_lightning_class_args(ModelCheckpoint, "resume_checkpoint")
        parser.set_defaults(
            {
                "resume_checkpoint.save_top_k": 0,
                "resume_checkpoint.save_last": True,
                "resume_checkpoint.every_n_train_steps": 500,
                "resume_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(Preemption, "preemption")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(TensorBoardFigures, "figures")
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "lightning_logs", "name": "default"},
                },
                "trainer.log_every_n_steps": 100,
            }
        )
        parser.link_arguments("seed_everything", "data.seed", compute_fn=_seed_or_zero)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI's step between parsing and instantiation, where it reads the checkpoint's hyperparameters
        so the checkpoint rebuilds its own model. Before it: refuse bad values, turn ``best``/``last`` into a
        file, and check that file, each with a one-line error."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        problem = validate_config(config)
        if problem:
            self.parser.error(problem)
        if subcommand:
            self._resolve_checkpoint(subcommand, config)
            if config.ckpt_path:
                load_checkpoint(config.ckpt_path)
        super()._parse_ckpt_path()

    def _resolve_checkpoint(self, subcommand: str, config: Namespace) -> None:
        """Turn ``best``/``last`` into a file of this model's runs; log into the run it came from."""
        logger = config.trainer.logger
        if not (isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")):
            return
        save_dir, name = logger.init_args.save_dir, logger.init_args.name
        ckpt = config.ckpt_path
        if subcommand == "fit":
            if ckpt == "last":
                found = find_checkpoint(save_dir, name, "last")
                if found is None:
                    print(f"no last checkpoint of {name!r} under {save_dir}: starting a new run", file=sys.stderr)
                ckpt = found
        else:
            ckpt = ckpt or "best"
            if ckpt in ("best", "last"):
                found = find_checkpoint(save_dir, name, ckpt)
                if found is None:
                    raise CifarError(
                        f"no {ckpt} checkpoint of model {name!r} under {Path(save_dir) / name}: "
                        f"train it first (python -m cifar_lightning fit --config ...) or pass --ckpt_path FILE"
                    )
                ckpt = found
        if ckpt is None:
            config.ckpt_path = None
            return
        if not Path(ckpt).is_file():
            raise CifarError(f"checkpoint {ckpt} does not exist")
        config.ckpt_path = str(ckpt)
        run = run_of(Path(ckpt))
        if run is not None and run.parent.resolve() == (Path(save_dir) / name).resolve():
            logger.init_args.version = run.name
        print(f"{subcommand}: using checkpoint {ckpt}", file=sys.stderr)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Atomic checkpoint files, and a progress bar that redraws less often unless the config names its own."""
        kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, progress_bar()]
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """An explicit ``model.cuda_graph: true`` that this Trainer rules out fails before the run folder exists."""
        if self.model.cuda_graph and (blocker := cuda_graph_blocker(self.trainer, self.model.compile_net)):
            raise cuda_graph_error(blocker)

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and best is not None and best.best_model_path:
            match = BEST_PATTERN.search(best.best_model_path)
            epoch = int(match[1]) if match else "?"
            print(
                f"best checkpoint: {best.best_model_path} (epoch {epoch}, val/acc {float(best.best_model_score):.4f})"
            )

    def after_test(self) -> None:
        """Keep the result beside the run it tested, where the report finds it; the confusion matrix
        goes there as an image and to TensorBoard."""
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k in ("test/acc", "test/loss")}
        confusion = self.model.test_confusion.compute().cpu()
        per_class = per_class_accuracy(confusion).tolist()
        ckpt = Path(self.config[self.subcommand].ckpt_path)
        run = run_of(ckpt) or Path(self.trainer.log_dir)
        record = {"checkpoint": str(ckpt), **metrics, "per_class_acc": per_class, "confusion": confusion.tolist()}
        tmp = run / f".{TEST_RESULTS}.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(run / TEST_RESULTS)
        image = run / "confusion_matrix.png"
        tmp = run / ".confusion_matrix.tmp.png"
        figure = confusion_figure(confusion, f"{run.parent.name}/{run.name}: test confusion matrix")
        figure.savefig(tmp, dpi=100)
        tmp.replace(image)
        for logger in self.trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("test/confusion_matrix", figure, global_step=self.trainer.global_step)
        print(f"test accuracy {metrics.get('test/acc', math.nan):.4f}, loss {metrics.get('test/loss', math.nan):.4f}")
        print(f"result saved to {run / TEST_RESULTS}, confusion matrix to {image}")


def _seed_or_zero(seed: Any) -> int:
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def main(args: list[str] | None = None) -> int:
    """Entry point of ``python -m cifar_lightning`` and ``cifar-lightning``; returns the exit status."""
    argv = sys.argv[1:] if args is None else args
    try:
        cli = CifarCLI(
            CIFARClassifier,
            CIFAR10DataModule,
            args=args,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except CifarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SIGTERMException:
        resume = [
            a for i, a in enumerate(argv) if not a.startswith("--ckpt_path") and argv[i - 1 : i] != ["--ckpt_path"]
        ]
        print(
            "stopped: the run was interrupted and saved; resume with: "
            f"python -m cifar_lightning {shlex.join(resume)} --ckpt_path last",
            file=sys.stderr,
        )
        return 130
    if cli.subcommand == "predict" and cli.datamodule.predict_failures:
        for file, reason in cli.datamodule.predict_failures:
            print(f"error: could not read {file}: {reason}", file=sys.stderr)
        return 1
    return 0
