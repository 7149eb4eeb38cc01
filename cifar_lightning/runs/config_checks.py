"""Checks of a parsed config that its types cannot express, run before anything is written: finite values in
range, a config file that is YAML, relative paths that resolve where the user thinks, values a checkpoint
overrides; and the Lightning messages that are not the user's to act on."""

import logging
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from jsonargparse.typing import restricted_number_type

from cifar_lightning.errors import CifarError
from cifar_lightning.runs.folders import parse_problem

MAX_SEED = 2**32 - 1  # numpy's largest seed, which Lightning's seed_everything also seeds
Seed = restricted_number_type("Seed", int, [(">=", 0), ("<=", MAX_SEED)])  # the type of every command's seed


def _numbers(value: Any, key: str = "") -> list[tuple[str, float]]:
    """Every float in a parsed config, with its dotted key."""
    if isinstance(value, dict | Namespace):
        items = value.items() if isinstance(value, dict) else vars(value).items()
        return [pair for k, v in items for pair in _numbers(v, f"{key}.{k}" if key else k)]
    if isinstance(value, list | tuple):
        return [pair for i, v in enumerate(value) for pair in _numbers(v, f"{key}[{i}]")]
    return [(key, value)] if isinstance(value, float) else []


def validate_config(config: Namespace) -> str | None:
    """What a parser type cannot say: finite numbers, a seed numpy takes, and the optimizer's lr and momentum in
    range."""
    for key, value in _numbers(config):
        if not math.isfinite(value):
            return f'Parser key "{key}": {value} is not a finite number'
    seed = config.get("seed_everything")
    if type(seed) is int and not 0 <= seed <= MAX_SEED:  # Lightning raises its ValueError only once the CLI runs
        return f'Parser key "seed_everything": {seed} must be in [0, {MAX_SEED}] (or true for a random seed)'
    optimizer = config.model.get("optimizer")
    if optimizer is not None:
        args = optimizer.init_args
        lr, momentum = args.get("lr"), args.get("momentum")
        if isinstance(lr, int | float) and lr <= 0:
            return f'Parser key "model.optimizer.init_args.lr": {lr} must be greater than 0'
        if isinstance(momentum, int | float) and not 0 <= momentum < 1:
            return f'Parser key "model.optimizer.init_args.momentum": {momentum} must be in [0, 1)'
    return None


def check_working_folder(config: Namespace) -> None:
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


def name_overridden_values(config: Namespace, checkpoint: dict[str, Any], subcommand: str) -> None:
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


def broken_config_file(argv: list[str]) -> str | None:
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
            return f"config file {value} is not valid YAML{parse_problem(err)}"
    return None


# Lightning's messages that are not the user's to act on (lightning 2.6.6): an advertisement, a deprecation
# inside Lightning, a default this package sets on every load, and a resume writing into its own run folder.
NOISE = (
    "Tip: For seamless cloud logging",
    "treespec",
    "`weights_only` was not set",
    "exists and is not empty",
    "args parameter is intended to run from within Python",  # study and sweep pass args on purpose
    # Weight averaging: the classifier's configure_model makes no layers to shard, and a tested or predicting
    # run's checkpoint already holds the averaged weights in its state_dict.
    "WeightAveraging doesn't support sharding",
    "WeightAveraging state cannot be restored",
    # The prediction CSV follows the order of the files, not Lightning's batch indices.
    "Couldn't infer the batch indices",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in NOISE)


def quiet() -> None:
    for text in NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logging.getLogger(name).addFilter(_DropNoise())
