"""A run's identity: the resolved settings that change what it learns.

Two runs are seeds of one experiment only when their identities agree on everything but the seed, and a run
is the study's result for a config only when its identity is that config's. What is left out gives the same
numbers by design or only says where and how to run: devices and strategy, paths, logging, progress bars,
the layout and speed switches (channels-last, compile, CUDA graphs, the optimizer's foreach/fused kernels),
the evaluation batch size and test-time augmentation (chosen when evaluating).

A run folder's ``config.yaml`` holds the resolved settings of the package that wrote it, so runs made before
a setting existed are compared by taking the missing setting at its default (new settings arrive off).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# What a config without ``model.optimizer`` trains with: the module's default.
DEFAULT_OPTIMIZER = {"class_path": "torch.optim.SGD", "init_args": {"lr": 1e-3, "momentum": 0.9}}

TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "max_time",
    "limit_train_batches",
    "limit_val_batches",
    "overfit_batches",
    "fast_dev_run",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "check_val_every_n_epoch",
    "val_check_interval",
    "callbacks",
)
LENGTH = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
LEFT_OUT = {
    "model": {"channels_last", "compile", "cuda_graph", "tta"},
    "data": {"data_dir", "download", "eval_batch_size", "predict_path", "num_workers"},
}
KERNEL_SWITCHES = {"foreach", "fused", "capturable", "differentiable"}  # optimizer init_args, same numbers
# Callbacks that watch or report; any other callback (weight averaging, say) is part of the experiment.
WATCHERS = ("ProgressBar", "LearningRateMonitor", "ModelSummary", "DeviceStatsMonitor", "Timer")


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The learning settings of a parsed config (a run's ``config.yaml`` or the CLI's parse), flattened to
    dotted keys (``model.optimizer.init_args.lr``); settings the config does not hold are absent."""
    flat: dict[str, Any] = {}
    if "seed_everything" in config:
        flat["seed_everything"] = config["seed_everything"]
    trainer = config.get("trainer") or {}
    for key in TRAINER_KEYS:
        if key in trainer:
            flat[f"trainer.{key}"] = _normalized(key, trainer[key])
    for section in ("model", "data"):
        values = {k: v for k, v in (config.get(section) or {}).items() if k not in LEFT_OUT[section]}
        if section == "model" and "optimizer" in values:
            optimizer = values.pop("optimizer") or DEFAULT_OPTIMIZER
            values["optimizer.class_path"] = optimizer.get("class_path")
            args = optimizer.get("init_args") or {}
            values |= {f"optimizer.init_args.{k}": v for k, v in args.items() if k not in KERNEL_SWITCHES}
        flat |= {f"{section}.{k}": v for k, v in values.items()}
    return {k: _plain(v) for k, v in flat.items()}


def precision(config: Mapping[str, Any]) -> str:
    """A parsed config's training precision, spelled as Lightning's long names (``32-true`` where it names none)."""
    return _normalized("precision", (config.get("trainer") or {}).get("precision"))


def _plain(value: Any) -> Any:
    """Tuples as lists, as in a ``config.yaml``: a parsed ``(0.49, 0.48, 0.45)`` is the same mean as a loaded list."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _normalized(key: str, value: Any) -> Any:
    """One spelling per meaning where Lightning accepts several."""
    if key.startswith("limit_"):  # 1 and 1.0 both mean every batch; 5.0 is read as 5 batches
        return None if value in (None, 1.0) else int(value) if isinstance(value, float) and value > 1 else value
    if key == "precision":
        text = "32" if value is None else str(value)
        return {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}.get(text, text)
    if key == "callbacks":
        listed = value if isinstance(value, list) else [] if value is None else [value]
        kept = [c for c in listed if not str((c or {}).get("class_path", "")).endswith(WATCHERS)]
        return kept or None
    return value


@dataclass(frozen=True)
class Experiment:
    """What a choice of run is for: the identity of a resolved config, with the package's defaults for the
    settings an older run's ``config.yaml`` does not hold. ``source`` names it in messages."""

    settings: dict[str, Any]
    defaults: dict[str, Any]
    source: str = "config"

    def differences(self, config: Mapping[str, Any], seed: bool = True) -> list[str]:
        """How a run's parsed ``config.yaml`` differs, one ``key value (config: value)`` per setting; empty when
        it is this experiment. A setting one side lacks counts at its default, and is left out where the
        defaults do not know it either."""
        run, found = identity(config), []
        for key in sorted(set(run) | set(self.settings)):
            if key == "seed_everything" and not seed:
                continue
            if (key not in run or key not in self.settings) and key not in self.defaults:
                continue
            mine, wanted = run.get(key, self.defaults.get(key)), self.settings.get(key, self.defaults.get(key))
            if not _same(mine, wanted):
                found.append(f"{key} {_text(mine)} ({self.source}: {_text(wanted)})")
        return found

    def resume_conflicts(self, config: Mapping[str, Any]) -> list[str]:
        """The differences that forbid going on with a run of ``config`` under these settings: all of them, except
        its length under a constant learning rate, where going on gives what a run of the new length would have
        (resume is exact); under a schedule fitted to the length, the length counts too."""
        found = self.differences(config)
        if self.settings.get("model.lr_schedule", "constant") == "constant":
            found = [d for d in found if setting(d) not in LENGTH]
        return found


def setting(difference: str) -> str:
    """The setting a line of :meth:`Experiment.differences` is about, e.g. ``trainer.precision``."""
    return difference.split(" ", 1)[0]


def _same(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
