"""``python -m cifar_lightning {fit,validate,test,predict}``: LightningCLI with the study's defaults.

The CLI parses and resolves; everything a stage writes comes from the module and the callbacks. What it
adds to LightningCLI: ``best``/``last`` become a checkpoint of this model's run folders (whatever the
logger), a new fit reserves its own run folder, values that parse but make no sense are refused before
anything is written, values the checkpoint overrides are named, and errors are one line.
"""

import contextlib
import functools
import io
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.atomic import atomic_write
from cifar_lightning.errors import CifarError, not_a_file
from cifar_lightning.runs import folders
from cifar_lightning.runs.callbacks import CtrlC, PredictionWriter, TensorBoardFigures, TestResults
from cifar_lightning.runs.checkpoints import (
    AtomicCheckpointIO,
    BestCheckpoint,
    LastCheckpoint,
    load_checkpoint,
)
from cifar_lightning.runs.config_checks import (
    broken_config_file,
    check_working_folder,
    name_overridden_values,
    quiet,
    validate_config,
)
from cifar_lightning.runs.folders import BEST_FILENAME, DEFAULT_SAVE_DIR, remove_if_empty, reserve_run
from cifar_lightning.runs.identity import Experiment, identity
from cifar_lightning.training.classifier import CIFARClassifier, cuda_graph_blocker, cuda_graph_error
from cifar_lightning.training.data import CIFAR10DataModule

PROGRESS_BAR_REFRESH = 20  # batches between redraws
RUN_ENV = "CIFAR_LIGHTNING_RUN_DIR"  # a fit's run folder, for the processes its DDP strategy starts


class EpochFromOne(TQDMProgressBar):
    """Lightning's tqdm bar, counting epochs from 1 like the checkpoint names, messages and the report."""

    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


def progress_bar() -> ProgressBar:
    """Redrawn every ``PROGRESS_BAR_REFRESH`` batches instead of every batch: a redraw's host time is a large
    share of a graphed training step on a GPU."""
    return EpochFromOne(refresh_rate=PROGRESS_BAR_REFRESH)


class OneLineErrors(LightningArgumentParser):
    """A parse error is its message and a hint, not the 100-line usage block in front of it."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if not self.exit_on_error:
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        subcommand = parser.prog.replace(" [options]", "").split()[1:]
        sys.stderr.write(f"error: {message}\n(see: {' '.join(['python -m cifar_lightning', *subcommand])} --help)\n")
        self.exit(2)


class SaveRunConfig(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder for ``fit`` only (a test must not overwrite its run's config),
    through the package's atomic write (the parser's own save can leave half a file on a full disk)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})  # save_config below writes it

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._log_dir = trainer.log_dir  # every rank asks: the property is a collective
            super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        atomic_write(Path(self._log_dir) / self.config_filename, lambda f: f.write(text), mode="w")


def run_location(config: Namespace) -> tuple[str, str]:
    files = config.get("config") or []
    return folders.run_location(config.as_dict(), files[-1] if files else None)


def _seed(config: Namespace) -> int | None:
    seed = config.get("seed_everything")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


class CifarCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reserved_run: Path | None = None
        kwargs.setdefault("parser_class", OneLineErrors)
        try:
            super().__init__(*args, **kwargs)
        finally:  # a fit that failed before writing anything gives its folder back
            if self.reserved_run is not None:
                os.environ.pop(RUN_ENV, None)
                remove_if_empty(self.reserved_run)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": False,  # last.ckpt is resume_checkpoint's
                "checkpoint.filename": BEST_FILENAME,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "resume_checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(TensorBoardFigures, "figures")
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": DEFAULT_SAVE_DIR, "name": "default", "default_hp_metric": False},
                },
                "trainer.log_every_n_steps": 100,
            }
        )
        parser.link_arguments("seed_everything", "data.seed", compute_fn=_seed_or_zero)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """After parsing (and before LightningCLI reads the checkpoint's hyperparameters): refuse bad values,
        turn ``best``/``last`` into a file and check it, reserve a new fit's run folder."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if problem := validate_config(config):
            parser.error(problem)
        if not subcommand:
            return
        check_working_folder(config)
        self._resolve_checkpoint(subcommand, config)
        if config.ckpt_path:
            name_overridden_values(config, load_checkpoint(config.ckpt_path), subcommand)

    def _resolve_checkpoint(self, subcommand: str, config: Namespace) -> None:
        """``best``/``last`` (``test``, ``validate`` and ``predict`` default to ``best``) become a checkpoint of this
        model's runs with this seed and these settings; evaluating without one is an error; a fit resumes only a
        run of its own settings; a run's command logs into its folder."""
        save_dir, name = run_location(config)
        ckpt, seed = config.ckpt_path or (None if subcommand == "fit" else "best"), _seed(config)
        wanted = Experiment(identity(config.as_dict()), identity(resolved_config(None)), source="this command")
        found = (
            folders.resolve_checkpoint(
                save_dir, name, ckpt, seed, subcommand == "fit", wanted, resume=subcommand == "fit"
            )
            if ckpt
            else None
        )
        if found is None:
            if ckpt is not None:
                seed_text = f" with seed {seed}" if seed is not None else ""
                print(
                    f"no last checkpoint of {name!r}{seed_text} with these settings in {save_dir}: starting a new run",
                    file=sys.stderr,
                )
            config.ckpt_path = None
            self._reserve_run(config)
            return
        ckpt, why = found
        if why:
            print(f"{subcommand}: using {ckpt} ({why})", file=sys.stderr)
        config.ckpt_path = str(ckpt)
        run = folders.run_of(ckpt)
        if subcommand == "fit" and run is not None:
            trained = folders.read_file(run / folders.CONFIG_FILE, yaml.safe_load)
            if trained and (changed := wanted.resume_conflicts(trained)):
                raise CifarError(
                    f"{ckpt} is from {run}, trained with other settings: {', '.join(changed)}; resuming it would "
                    f"mix two experiments in one run: start a new run (no --ckpt_path) or resume with the run's "
                    f"own settings (--config {run / folders.CONFIG_FILE})"
                )
        if run is not None and run.parent.resolve() == (Path(save_dir) / name).resolve():
            self._log_into(config, run)

    def _reserve_run(self, config: Namespace) -> None:
        """A new fit's ``version_N``, taken with mkdir so that fits started together never share one. The
        processes DDP starts run this command again: they take rank 0's folder, which they inherit in RUN_ENV."""
        if config.checkpoint.get("dirpath"):
            return
        if (inherited := os.environ.get(RUN_ENV)) and int(os.environ.get("LOCAL_RANK", "0")) > 0:
            self._log_into(config, Path(inherited))
            return
        save_dir, name = run_location(config)
        self.reserved_run = reserve_run(save_dir, name)
        os.environ[RUN_ENV] = str(self.reserved_run)
        self._log_into(config, self.reserved_run)

    @staticmethod
    def _log_into(config: Namespace, run: Path) -> None:
        logger = config.trainer.logger
        args = logger.get("init_args") if isinstance(logger, Namespace) else None
        if args is not None and "version" in args and args.get("save_dir") and args.get("name"):
            args.version = int(run.name.removeprefix("version_"))
        else:  # no run folders of its own: the Trainer's root is the run, checkpoints go under it
            config.trainer.default_root_dir = str(run)
        config.checkpoint.dirpath = str(run / "checkpoints")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The package's callbacks, atomic checkpoint files (besides the config's own plugins), and a progress
        bar that redraws less often unless the config names its own."""
        config = (self.config_init[self.subcommand] if self.subcommand else self.config_init).get("trainer") or {}
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins = [*plugins, AtomicCheckpointIO()]
        kwargs["plugins"] = plugins
        callbacks = config.get("callbacks") or []
        callbacks = [*(callbacks if isinstance(callbacks, list) else [callbacks]), CtrlC(), TestResults()]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(progress_bar())
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """An explicit ``model.cuda_graph: true`` that this Trainer rules out fails before the run starts."""
        if self.model.cuda_graph and (blocker := cuda_graph_blocker(self.trainer, self.model.compile_net)):
            raise cuda_graph_error(blocker)


def _seed_or_zero(seed: Any) -> int:
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def resolved_config(config: str | Path | None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings ``fit --config config *extra`` resolves to (no config: the package's defaults), from the CLI's
    own parse (``--print_config``): nothing runs or is written, and options in ``extra`` count."""
    if config is not None and not Path(config).is_file():
        raise CifarError(f"config {config} {not_a_file(config)}: pass a file from configs/")
    mtime = Path(config).stat().st_mtime_ns if config is not None else 0
    return _parsed(None if config is None else str(config), mtime, Path.cwd(), extra)


@functools.cache  # a study and the report ask several times; the file's mtime and the folder are part of the key
def _parsed(config: str | None, mtime: int, cwd: Path, extra: tuple[str, ...]) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    args = ["fit", *([f"--config={config}"] if config else []), *extra, "--print_config"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    except SystemExit as exit:  # --print_config exits after printing, like a parse error
        code = exit.code
    if code != 0:
        problem = err.getvalue().strip().splitlines()[0].removeprefix("error: ") if err.getvalue().strip() else ""
        raise CifarError(f"{config or 'the default config'}: {problem}")
    return yaml.safe_load(out.getvalue())


def config_location(config: str | Path, extra: tuple[str, ...] = ()) -> tuple[str, str, int | None]:
    """(save_dir, model name, max_epochs) that ``fit --config config *extra`` would use."""
    parsed = resolved_config(config, extra)
    return (*folders.run_location(parsed, config), parsed["trainer"].get("max_epochs"))


def experiment(config: str | Path, extra: tuple[str, ...] = ()) -> Experiment:
    """The identity of ``fit --config config *extra``, to choose and check runs by."""
    defaults = identity(resolved_config(None))
    return Experiment(identity(resolved_config(config, extra)), defaults, source=Path(config).name)


def main(args: list[str] | None = None) -> int:
    """Entry point of the Lightning subcommands; returns the exit status."""
    import shlex

    quiet()
    argv = sys.argv[1:] if args is None else args
    if problem := broken_config_file(argv):
        print(f"error: {problem}", file=sys.stderr)
        return 2
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
