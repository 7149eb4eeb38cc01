"""``python -m cifar_lightning {fit,validate,test,predict}``: LightningCLI with the study's defaults.

The CLI parses and resolves; everything a stage writes comes from the module and the callbacks. What it
adds to LightningCLI: ``best``/``last`` become a checkpoint of this model's run folders (whatever the
logger), a new fit reserves its own run folder, values that parse but make no sense are refused before
anything is written, values the checkpoint overrides are named, and errors are one line.
"""

import logging
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.callbacks import CtrlC, PredictionWriter, TensorBoardFigures, TestResults
from cifar_lightning.checkpoints import (
    AtomicCheckpointIO,
    BestCheckpoint,
    LastCheckpoint,
    load_checkpoint,
)
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import CifarError
from cifar_lightning.module import CIFARClassifier, cuda_graph_blocker, cuda_graph_error
from cifar_lightning.runs import BEST_FILENAME, find_checkpoint, remove_if_empty, reserve_run, run_of

PROGRESS_BAR_REFRESH = 20  # batches between redraws
DEFAULT_SAVE_DIR = "lightning_logs"


def progress_bar() -> ProgressBar:
    """Lightning's default bar (Rich where installed, else tqdm), redrawn every ``PROGRESS_BAR_REFRESH`` batches
    instead of every batch: a redraw costs ~0.2 ms of host time, a fifth of a graphed training step on a GPU."""
    import importlib.util

    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    bar = RichProgressBar if importlib.util.find_spec("rich") else TQDMProgressBar
    return bar(refresh_rate=PROGRESS_BAR_REFRESH)


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
    """Saves ``config.yaml`` in the run folder for ``fit`` only (a test must not overwrite its run's config)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


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


def run_location(config: Namespace) -> tuple[str, str]:
    """(save_dir, model name) of this config's run folders: the logger's, or for a logger without them
    (``--trainer.logger false``, W&B, ...) ``lightning_logs`` and the config file's name."""
    logger = config.trainer.logger
    args = logger.get("init_args") if isinstance(logger, Namespace) else None
    if args is not None and args.get("save_dir") and args.get("name"):
        return str(args.save_dir), str(args.name)
    files = config.get("config") or []
    return DEFAULT_SAVE_DIR, Path(str(files[-1])).stem if files else "default"


def _check_working_folder(config: Namespace) -> None:
    """Relative paths resolve from the working folder: a study config run from elsewhere would create an empty
    ``data/`` and download there, and write its runs there too. Say so instead."""
    data_dir = Path(config.data.data_dir)
    files = [Path(str(f)).resolve() for f in config.get("config") or []]
    roots = {f.parent.parent for f in files if f.parent.name == "configs"}
    if data_dir.is_absolute() or data_dir.exists() or not roots or Path.cwd().resolve() in roots:
        return
    root = sorted(roots)[0]
    raise CifarError(
        f"data.data_dir {data_dir} is relative to the working folder {Path.cwd()}, where it does not exist; "
        f"commands assume the repository root: cd {root} (or pass an absolute --data.data_dir)"
    )


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
        _check_working_folder(config)
        self._resolve_checkpoint(subcommand, config)
        if config.ckpt_path:
            _name_overridden_values(config, load_checkpoint(config.ckpt_path), subcommand)

    def _resolve_checkpoint(self, subcommand: str, config: Namespace) -> None:
        """``best``/``last`` (``test``, ``validate`` and ``predict`` default to ``best``) become a checkpoint of this
        model's runs with this seed; evaluating without one is an error; a run's command logs into its folder."""
        save_dir, name = run_location(config)
        ckpt, seed = config.ckpt_path, _seed(config)
        if subcommand != "fit":
            ckpt = ckpt or "best"
        if ckpt is None:
            self._reserve_run(config)
            return
        if ckpt in ("best", "last"):
            found = find_checkpoint(save_dir, name, ckpt, seed)
            seed_text = f" with seed {seed}" if seed is not None else ""
            if found is None and subcommand == "fit":
                print(f"no last checkpoint of {name!r}{seed_text} in {save_dir}: starting a new run", file=sys.stderr)
                config.ckpt_path = None
                self._reserve_run(config)
                return
            if found is None:
                raise CifarError(
                    f"no {ckpt} checkpoint of model {name!r}{seed_text} under {Path(save_dir) / name}: train it "
                    "first (python -m cifar_lightning fit --config ...) or pass --ckpt_path FILE"
                )
            ckpt, why = found
            print(f"{subcommand}: using {ckpt} ({why})", file=sys.stderr)
        elif not Path(ckpt).is_file():
            raise CifarError(f"checkpoint {ckpt} does not exist: pass a .ckpt file, best or last")
        config.ckpt_path = str(ckpt)
        run = run_of(Path(ckpt))
        if run is not None and run.parent.resolve() == (Path(save_dir) / name).resolve():
            self._log_into(config, run)

    def _reserve_run(self, config: Namespace) -> None:
        """A new fit's ``version_N``, taken with mkdir so that fits started together never share one."""
        if config.checkpoint.get("dirpath"):
            return
        save_dir, name = run_location(config)
        self.reserved_run = reserve_run(save_dir, name)
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


def _name_overridden_values(config: Namespace, checkpoint: dict[str, Any], subcommand: str) -> None:
    """The checkpoint's model values replace the command line's (they define its network); its normalization
    replaces the data's for evaluation. Say so where they differ, instead of silently."""
    theirs = checkpoint.get("hyper_parameters") or {}
    for key, value in theirs.items():
        given = config.model.get(key)
        if key in config.model and given != value:
            print(f"warning: model.{key}={given} ignored: the checkpoint was trained with {value}", file=sys.stderr)
    if subcommand == "fit":
        return
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    for key in ("mean", "std"):
        if key in data and tuple(config.data[key]) != tuple(data[key]):
            theirs = tuple(data[key])
            print(
                f"warning: data.{key} {tuple(config.data[key])} replaced by the checkpoint's {theirs}", file=sys.stderr
            )
            config.data[key] = theirs


def _seed_or_zero(seed: Any) -> int:
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _broken_config_file(argv: list[str]) -> str | None:
    """A ``--config`` file that is not valid YAML, named with the line of the problem (jsonargparse's own
    message names neither)."""
    import yaml

    for i, arg in enumerate(argv):
        value = arg.removeprefix("--config=") if arg.startswith("--config=") else None
        if arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is None or not Path(value).is_file():
            continue
        try:
            yaml.safe_load(Path(value).read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            where = getattr(err, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            return f"config file {value} is not valid YAML{line}: {getattr(err, 'problem', None) or err}"
    return None


# Lightning's messages that are not the user's to act on (lightning 2.6.6): an advertisement, a deprecation
# inside Lightning, a default this package sets on every load, and a resume writing into its own run folder.
NOISE = ("Tip: For seamless cloud logging", "treespec", "`weights_only` was not set", "exists and is not empty")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in NOISE)


def quiet() -> None:
    for text in NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logging.getLogger(name).addFilter(_DropNoise())


def main(args: list[str] | None = None) -> int:
    """Entry point of the Lightning subcommands; returns the exit status."""
    import shlex

    quiet()
    argv = sys.argv[1:] if args is None else args
    if problem := _broken_config_file(argv):
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
