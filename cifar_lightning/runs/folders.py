"""Run folders, ``<save_dir>/<model>/version_N``: reserving a new one, reading what fit and test left there,
and choosing a model's run for ``--ckpt_path best``/``last`` and for the report by one rule.

A run folder holds ``config.yaml`` (written by fit), TensorBoard event files, ``checkpoints/`` and, once
tested, ``test_results.json``. The layout is the package's own, whatever logger a command uses.
"""

import json
import math
import re
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cifar_lightning.errors import CifarError, not_a_file
from cifar_lightning.runs.identity import DEFAULT_OPTIMIZER, Experiment, precision
from cifar_lightning.training.data import TRAIN_SIZE, VAL_SIZE

TEST_RESULTS = "test_results.json"
TEST_RESULTS_TTA = "test_results_tta.json"  # a test with test-time augmentation, beside the plain one
CONFIG_FILE = "config.yaml"
LAST = "last.ckpt"
DEFAULT_SAVE_DIR = "lightning_logs"
# Checkpoint names count epochs from 1, as the report, the messages and the study do.
BEST_FILENAME = "epoch={epoch:03d}-val_acc={val/acc:.4f}"
BEST_PATTERN = re.compile(r"epoch=(\d+)-val_acc=([0-9.]+)\.ckpt$")


def run_dirs(save_dir: str | Path, name: str) -> list[Path]:
    """A model's run folders (``version_N``), oldest first."""
    root = Path(save_dir) / name
    runs = [p for p in root.glob("version_*") if p.is_dir() and p.name.removeprefix("version_").isdigit()]
    return sorted(runs, key=lambda p: int(p.name.removeprefix("version_")))


def reserve_run(save_dir: str | Path, name: str) -> Path:
    """Create the next free ``version_N`` folder with ``mkdir``, which only one process can win, so runs of
    one model started at the same moment never share a folder (loggers pick ``max + 1`` without a lock)."""
    root = Path(save_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    existing = run_dirs(save_dir, name)
    version = int(existing[-1].name.removeprefix("version_")) + 1 if existing else 0
    while True:
        folder = root / f"version_{version}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            version += 1


def best_in(checkpoint_dir: Path) -> Path | None:
    """The checkpoint with the highest validation accuracy in the file name (later epoch on ties)."""
    scored = [(float(m[2]), int(m[1]), p) for p in checkpoint_dir.glob("*.ckpt") if (m := BEST_PATTERN.search(p.name))]
    return max(scored)[2] if scored else None


def run_of(checkpoint: Path) -> Path | None:
    """The ``version_N`` folder a checkpoint belongs to, if it sits in one's ``checkpoints/``."""
    parent = checkpoint.resolve().parent
    if parent.name == "checkpoints" and parent.parent.name.startswith("version_"):
        return parent.parent
    return None


def parse_problem(err: Exception) -> str:
    """What a YAML or JSON parser found wrong, with the line where it knows it, to follow what failed to parse:
    `` at line 3: mapping values are not allowed here``."""
    mark = getattr(err, "problem_mark", None)
    line = mark.line + 1 if mark is not None else getattr(err, "lineno", None)
    what = getattr(err, "problem", None) or getattr(err, "msg", None) or str(err)
    return f" at line {line}: {what}" if line else f": {what}"


def read_file(path: Path, parse: Any, mapping: bool = True, fix: str = "repair it or move its run folder away") -> Any:
    """A YAML or JSON file (a run's, unless ``fix`` says what else to do), or None if absent; a damaged one (or,
    with ``mapping``, one that does not hold a mapping) is one error naming it."""
    if not path.is_file():
        return None
    try:
        found = parse(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CifarError(f"cannot read {path} ({type(err).__name__}{parse_problem(err)}): {fix}") from None
    if mapping and found is not None and not isinstance(found, dict):
        raise CifarError(f"cannot read {path} (a {type(found).__name__}, not a mapping): {fix}")
    return found


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The study's hyperparameters from a parsed config; the one reader for TensorBoard's HPARAMS and the report.

    A config without an optimizer trains with the module's default.
    """
    model, data, trainer = config.get("model") or {}, config.get("data") or {}, config.get("trainer") or {}
    optimizer = model.get("optimizer") or DEFAULT_OPTIMIZER
    args = optimizer.get("init_args") or {}
    return {
        "epochs": trainer.get("max_epochs"),
        "batch size": data.get("batch_size"),
        "momentum": args.get("momentum", 0.0),
        "learning rate": args.get("lr"),
        "optimizer": optimizer["class_path"].rsplit(".", 1)[-1],
        "dropout": model.get("dropout", 0.0),
        "seed": config.get("seed_everything"),
    }


@dataclass
class Run:
    """One ``version_N`` folder of a model, as fit and test left it."""

    model: str
    path: Path
    config: dict[str, Any]
    scalars: dict[str, list[tuple[int, float]]]
    test: dict[str, Any] | None
    epoch_seconds: float | None = None  # median wall time between epoch ends (robust to a resume's gap)
    step_seconds: float | None = None  # median wall time per training step between logged steps of one epoch
    test_tta: dict[str, Any] | None = None  # the test with test-time augmentation (--model.tta true), if run
    # how its settings differ from the experiment it was read for (Experiment.differences, the seed left out)
    deviations: list[str] = field(default_factory=list)
    configured_epochs: int | None = None  # the experiment's max_epochs, to show beside a run of another length

    @property
    def max_epochs(self) -> int | None:
        return (self.config.get("trainer") or {}).get("max_epochs")

    @property
    def precision(self) -> str:
        return precision(self.config)

    @property
    def seed(self) -> int | None:
        return self.config.get("seed_everything")

    @property
    def epochs_done(self) -> int:
        """Finished epochs: each logs its training means once (validation may run only every few epochs)."""
        return len(self.scalars.get("train/loss_epoch", []) or self.scalars.get("val/acc", []))

    def epoch_of(self, step: int) -> float:
        """The epoch (from 1) that ended at ``step``."""
        ends = [s for s, _ in self.scalars.get("train/loss_epoch", [])]
        return ends.index(step) + 1 if step in ends else (step + 1) / self.steps_per_epoch()

    @property
    def complete(self) -> bool:
        return self.max_epochs is not None and self.epochs_done >= self.max_epochs

    @property
    def faithful(self) -> bool:
        """Complete and with its experiment's own settings: the only kind of run that stands for a config's result
        (any other is shown with its status, and never set against the study)."""
        return self.complete and not self.deviations

    @property
    def status(self) -> str:
        parts = [] if self.complete else [f"interrupted after {self.epochs_done} of {self.max_epochs} epochs"]
        if self.deviations:
            parts.append("other settings: " + ", ".join(self.deviations))
        return "; ".join(parts) or "complete"

    def best(self) -> tuple[float, float, int] | None:
        """(val/acc, val/loss at that epoch, epoch from 1): the first epoch reaching the best accuracy."""
        val = self.scalars.get("val/acc", [])
        losses = dict(self.scalars.get("val/loss", []))
        if not val:
            return None
        step, acc = max(val, key=lambda pair: (pair[1], -pair[0]))
        return acc, losses.get(step, math.nan), int(self.epoch_of(step))

    def steps_per_epoch(self) -> int:
        """From where the first epoch ended; else from the config (full data set)."""
        ends = self.scalars.get("train/loss_epoch", []) or self.scalars.get("val/acc", [])
        if ends:
            return ends[0][0] + 1
        data = self.config.get("data") or {}
        return math.ceil((TRAIN_SIZE - data.get("val_size", VAL_SIZE)) / data.get("batch_size", 128))

    def hyperparameters(self) -> dict[str, Any]:
        return hyperparameters(self.config)


def load_run(model: str, path: Path, experiment: Experiment | None = None) -> Run:
    """Read a run folder: its config, its scalars through TensorBoard's own reader, its test result."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = read_file(path / CONFIG_FILE, yaml.safe_load) or {}
    events = EventAccumulator(str(path))
    events.Reload()
    # one value per step (a resumed run logs again the steps after its last checkpoint: the latest counts)
    scalars = {tag: sorted({e.step: e.value for e in events.Scalars(tag)}.items()) for tag in events.Tags()["scalars"]}
    # the run's validation history is what fit logged where an epoch ended; ``validate`` logs into the
    # run's folder too, at step 0
    epoch_ends = {step for step, _ in scalars.get("train/loss_epoch", [])}
    for tag in ("val/acc", "val/loss"):
        scalars[tag] = [(step, v) for step, v in scalars.get(tag, []) if step in epoch_ends]
    ends = sorted({e.step: e.wall_time for e in events.Scalars("train/loss_epoch")}.values()) if epoch_ends else []
    gaps = sorted(b - a for a, b in zip(ends, ends[1:], strict=False))
    epoch_seconds = gaps[len(gaps) // 2] if gaps else None
    step_seconds = _step_seconds(events.Scalars("train/loss") if "train/loss" in scalars else [], epoch_ends)
    test, test_tta = (read_file(path / name, json.loads) for name in (TEST_RESULTS, TEST_RESULTS_TTA))
    deviations = experiment.differences(config, seed=False) if experiment else []
    configured = experiment.settings.get("trainer.max_epochs") if experiment else None
    return Run(model, path, config, scalars, test, epoch_seconds, step_seconds, test_tta, deviations, configured)


def _step_seconds(events: list[Any], epoch_ends: set[int]) -> float | None:
    """The median wall time per step between consecutive logged training steps with no epoch end (validation)
    between them; the latest event of a step counts (a resume logs some steps again)."""
    times = sorted({e.step: e.wall_time for e in events}.items())
    rates = [
        (w2 - w1) / (s2 - s1)
        for (s1, w1), (s2, w2) in zip(times, times[1:], strict=False)
        if w2 > w1 and not any(s1 <= end < s2 for end in epoch_ends)
    ]
    return statistics.median(rates) if rates else None


def run_location(config: Mapping[str, Any], config_file: str | Path | None) -> tuple[str, str]:
    """(save_dir, model name) of a parsed config's run folders: its logger's, or for a logger without them
    (``--trainer.logger false``, W&B, ...) ``lightning_logs`` and the config file's name."""
    logger = (config.get("trainer") or {}).get("logger")
    args = (logger.get("init_args") or {}) if isinstance(logger, Mapping) else {}
    if args.get("save_dir") and args.get("name"):
        return str(args["save_dir"]), str(args["name"])
    return DEFAULT_SAVE_DIR, Path(str(config_file)).stem if config_file else "default"


def model_runs(
    save_dir: str | Path, name: str, experiment: Experiment | None = None, seed: int | None = None
) -> list[Run]:
    """The runs of one model that fit started (they have a ``config.yaml``), oldest first, each with how it differs
    from ``experiment``; only ``seed``'s if given. A run with a damaged file is named in a warning and left out."""
    runs = []
    for path in run_dirs(save_dir, name):
        if not (path / CONFIG_FILE).is_file():
            continue
        try:
            runs.append(load_run(name, path, experiment))
        except CifarError as err:  # one damaged run must not hide the others
            print(f"warning: {err}; the run is left out", file=sys.stderr)
    return [r for r in runs if seed is None or r.seed == seed]


def choose(runs: list[Run]) -> tuple[Run, str]:
    """The run that stands for ``runs`` (one seed's), and why: the newest complete run of the experiment they were
    read for, else its newest (interrupted) one; only where none has the experiment's settings, the newest complete
    run of other settings, else the newest. ``best``, ``export``, ``serve`` and the report choose by this rule;
    ``study`` takes only runs of exactly its settings."""
    same = [r for r in runs if not r.deviations]
    pool = same or runs
    complete = [r for r in pool if r.complete]
    run = (complete or pool)[-1]
    why = "newest complete run" if run.complete else f"newest run, {run.status.split('; ')[0]}: none is complete"
    if same:
        return run, why + " of these settings"
    return run, f"{why}; none has these settings, this one differs in {', '.join(run.deviations)}"


def find_checkpoint(
    save_dir: str | Path,
    name: str,
    which: str,
    seed: int | None,
    experiment: Experiment | None = None,
    resume: bool = False,
) -> tuple[Path, str] | None:
    """``best`` or ``last`` checkpoint of model ``name`` and the reason its run was chosen.

    ``best`` comes from the run :func:`choose` picks for this seed and experiment; ``last`` from the newest run of
    this seed that has one, of this experiment when it is to be resumed (a run is never resumed with other
    settings, :meth:`Experiment.resume_conflicts`: that is an error naming them), else preferably of this
    experiment. Runs without a ``config.yaml`` (never started by fit) are skipped; a run another process is
    writing can be chosen, but its files are always whole (atomic writes).
    """
    runs = [r for r in model_runs(save_dir, name, experiment, seed) if _checkpoint(r.path, which) is not None]
    if which == "best":
        if not runs:
            return None
        run, why = choose(runs)
    else:
        conflicts = [experiment.resume_conflicts(r.config) if experiment else r.deviations for r in runs]
        same = [r for r, found in zip(runs, conflicts, strict=True) if not found]
        if resume and runs and not same and experiment:
            raise CifarError(
                f"the newest run of {name!r} with a last.ckpt, {runs[-1].path}, was trained with other settings: "
                f"{', '.join(conflicts[-1])}; resume it with its own settings "
                f"(--config {runs[-1].path / CONFIG_FILE}) or start a new run (no --ckpt_path)"
            )
        if not runs:
            return None
        run = (same or runs)[-1]
        why = "newest run with a last.ckpt" + (
            " of these settings" if same else f"; it differs in {', '.join(run.deviations)}"
        )
    return _checkpoint(run.path, which), f"seed {seed}: {why}" if seed is not None else why


def resolve_checkpoint(
    save_dir: str | Path,
    name: str,
    ckpt: str,
    seed: int | None,
    missing_ok: bool = False,
    experiment: Experiment | None = None,
    resume: bool = False,
) -> tuple[Path, str | None] | None:
    """A checkpoint file and why it was chosen: ``best``/``last`` of model ``name``'s runs with this seed
    (:func:`find_checkpoint`), or the file given. What is not there is an error (None with ``missing_ok``)."""
    if ckpt not in ("best", "last"):
        if not Path(ckpt).is_file():
            raise CifarError(f"checkpoint {ckpt} {not_a_file(ckpt)}: pass a .ckpt file, best or last")
        return Path(ckpt), None
    found = find_checkpoint(save_dir, name, ckpt, seed, experiment, resume)
    if found is None and not missing_ok:
        seed_text = f" with seed {seed}" if seed is not None else ""
        raise CifarError(
            f"no {ckpt} checkpoint of model {name!r}{seed_text} under {Path(save_dir) / name}: train it "
            "first (python -m cifar_lightning fit --config ...) or pass --ckpt_path FILE"
        )
    return found


def _checkpoint(run: Path, which: str) -> Path | None:
    folder = run / "checkpoints"
    found = best_in(folder) if which == "best" else folder / LAST
    return found if found is not None and found.is_file() else None


def remove_if_empty(folder: Path) -> None:
    """Give back a reserved run folder that nothing was written to (a run that failed before it started),
    and the model and log folders above it if that leaves them empty."""
    for path in (folder, folder.parent, folder.parent.parent):
        try:
            path.rmdir()
        except OSError:
            return
