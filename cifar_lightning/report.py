"""``python -m cifar_lightning report``: the study's tables and figures, regenerated from the runs on disk.

It reads what ``fit`` and ``test`` left in each run folder: ``config.yaml``, the TensorBoard event
files (through TensorBoard's own reader) and ``test_results.json``. It never trains or evaluates.
Epochs are counted from 1 in the report, as in the study (checkpoint names count from 0).
"""

import datetime
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_lightning.checkpoints import run_dirs
from cifar_lightning.data import CIFAR10_MEAN, CIFAR10_STD, NPZ_NAME, TRAIN_SIZE, channel_stats, load_npz
from cifar_lightning.errors import CifarError
from cifar_lightning.figures import curves_figure, samples_figure

TEST_RESULTS = "test_results.json"


@dataclass(frozen=True)
class StudyModel:
    """One row of the study's tables: its config and its published results."""

    epochs: int
    batch_size: int
    momentum: float
    lr: float
    dropout: float
    best_val_acc: float
    val_loss: float
    best_epoch: int
    test_acc: float | None = None


STUDY = {
    "model1": StudyModel(20, 32, 0.9, 1e-3, 0.0, 0.746, 0.9791, 16),
    "model2": StudyModel(50, 32, 0.9, 1e-3, 0.5, 0.822, 0.5478, 49),
    "model3": StudyModel(300, 32, 0.5, 1e-3, 0.5, 0.848, 0.4994, 288),
    "model4": StudyModel(300, 64, 0.9, 1e-3, 0.5, 0.859, 0.4854, 245, test_acc=0.8301),
    "model5": StudyModel(50, 32, 0.9, 1e-3, 0.2, 0.797, 0.8708, 48),
    "model6": StudyModel(300, 32, 0.9, 1e-3, 0.8, 0.753, 0.7491, 285),
    "model7": StudyModel(50, 128, 0.5, 1e-2, 0.5, 0.786, 0.6396, 50),
    "model7b": StudyModel(300, 128, 0.5, 1e-2, 0.5, 0.857, 0.4594, 237),
}


@dataclass
class Run:
    """One ``version_N`` folder of a model, as fit and test left it."""

    model: str
    path: Path
    config: dict[str, Any]
    scalars: dict[str, list[tuple[int, float]]]
    test: dict[str, Any] | None
    configured_epochs: int | None  # max_epochs of configs/<model>.yaml, to tell a capped run

    @property
    def max_epochs(self) -> int | None:
        return (self.config.get("trainer") or {}).get("max_epochs")

    @property
    def epochs_done(self) -> int:
        return len(self.scalars.get("val/acc", []))

    @property
    def complete(self) -> bool:
        return self.max_epochs is not None and self.epochs_done >= self.max_epochs

    @property
    def capped(self) -> bool:
        return None not in (self.max_epochs, self.configured_epochs) and self.max_epochs < self.configured_epochs

    @property
    def status(self) -> str:
        parts = [] if self.complete else [f"interrupted after {self.epochs_done} of {self.max_epochs} epochs"]
        if self.capped:
            parts.append(f"capped at {self.max_epochs} of {self.configured_epochs} epochs")
        return "; ".join(parts) or "complete"

    def best(self) -> tuple[float, float, int] | None:
        """(val/acc, val/loss at that epoch, epoch from 1): the first epoch reaching the best accuracy."""
        accs = [v for _, v in self.scalars.get("val/acc", [])]
        losses = [v for _, v in self.scalars.get("val/loss", [])]
        if not accs:
            return None
        i = int(np.argmax(accs))
        return accs[i], losses[i] if i < len(losses) else math.nan, i + 1

    def steps_per_epoch(self) -> int:
        """From where the first epoch's validation was logged; else from the config (full data set)."""
        val = self.scalars.get("val/acc", [])
        if val:
            return val[0][0] + 1
        data = self.config.get("data") or {}
        return math.ceil((TRAIN_SIZE - data.get("val_size", 1000)) / data.get("batch_size", 128))

    def hyperparameters(self) -> dict[str, Any]:
        model, data = self.config.get("model") or {}, self.config.get("data") or {}
        optimizer = model.get("optimizer") or {"class_path": "torch.optim.SGD", "init_args": {"lr": 1e-3}}
        args = optimizer.get("init_args") or {}
        return {
            "epochs": self.max_epochs,
            "batch size": data.get("batch_size"),
            "momentum": args.get("momentum", 0.0),
            "learning rate": args.get("lr"),
            "optimizer": optimizer["class_path"].rsplit(".", 1)[-1],
            "dropout": model.get("dropout", 0.0),
        }


def _read(path: Path, parse: Any) -> Any:
    """A run's YAML or JSON file, or None if absent; a damaged one is one error naming it."""
    if not path.is_file():
        return None
    try:
        return parse(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CifarError(f"cannot read {path} ({type(err).__name__}): repair it or move its run folder away") from None


def load_run(model: str, path: Path, configs_dir: Path) -> Run:
    config = _read(path / "config.yaml", yaml.safe_load) or {}
    events = EventAccumulator(str(path))
    events.Reload()
    # one value per step (a resumed run logs again the steps after its last checkpoint: the latest counts)
    scalars = {tag: sorted({e.step: e.value for e in events.Scalars(tag)}.items()) for tag in events.Tags()["scalars"]}
    # the run's validation history is what fit logged where an epoch ended; ``validate`` logs into the
    # run's folder too, at step 0
    epoch_ends = {step for step, _ in scalars.get("train/loss_epoch", [])}
    for tag in ("val/acc", "val/loss"):
        scalars[tag] = [(step, v) for step, v in scalars.get(tag, []) if step in epoch_ends]
    configured = _read(configs_dir / f"{model}.yaml", yaml.safe_load) or {}
    configured_epochs = (configured.get("trainer") or {}).get("max_epochs")
    return Run(model, path, config, scalars, _read(path / TEST_RESULTS, json.loads), configured_epochs)


def collect(log_dir: Path, configs_dir: Path) -> dict[str, list[Run]]:
    """Every model's runs that ``fit`` started (they have a ``config.yaml``), oldest first."""
    runs: dict[str, list[Run]] = {}
    for model_dir in sorted(p for p in log_dir.iterdir() if p.is_dir()) if log_dir.is_dir() else []:
        found = [load_run(model_dir.name, r, configs_dir) for r in run_dirs(log_dir, model_dir.name)]
        found = [r for r in found if r.config]
        if found:
            runs[model_dir.name] = found
    return dict(sorted(runs.items(), key=lambda item: _model_order(item[0])))


def _model_order(model: str) -> tuple[int, str]:
    return (list(STUDY).index(model), "") if model in STUDY else (len(STUDY), model)


def choose(runs: list[Run]) -> Run:
    """The newest complete run; the newest one when none is complete."""
    complete = [r for r in runs if r.complete]
    return (complete or runs)[-1]


def _pct(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:.2f}%"


def _diff(ours: float | None, theirs: float | None, scale: float = 100, unit: str = " pp") -> str:
    if ours is None or theirs is None or math.isnan(ours):
        return "—"
    return f"{scale * (ours - theirs):+.2f}{unit}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _normalization_section(data_dir: Path, val_size: int, out: Path) -> list[str]:
    npz = data_dir / NPZ_NAME
    lines = ["## Normalization (the study's Table 1) and sample images", ""]
    if not npz.is_file():
        print(f"warning: no {npz}: the report has no sample images or normalization values", file=sys.stderr)
        return [*lines, f"Not computed: no `{npz}` (pass `--data_dir` with the data the runs used).", ""]
    arrays = load_npz(npz)
    train = slice(0, len(arrays["x_train"]) - val_size)
    images = torch.from_numpy(arrays["x_train"][train]).permute(0, 3, 1, 2)
    labels = torch.from_numpy(arrays["y_train"][train])
    mean, std = channel_stats(images)
    rows = [
        [stat, channel, f"{ours[i]:.7f}", f"{study[i]:.7f}", f"{ours[i] - study[i]:+.7f}"]
        for stat, ours, study in (("mean", mean, CIFAR10_MEAN), ("std", std, CIFAR10_STD))
        for i, channel in enumerate(("red", "green", "blue"))
    ]
    samples_figure(images, labels).savefig(out / "samples.png", dpi=100)
    return [
        *lines,
        f"Computed from the {len(images):,} training images of `{npz}` (values in [0, 1]).",
        "",
        *_table(["statistic", "channel", "ours", "study", "difference"], rows),
        "",
        "![samples](samples.png)",
        "",
    ]


def _hyperparameter_section(chosen: dict[str, Run]) -> list[str]:
    rows = []
    for model, run in chosen.items():
        hp = run.hyperparameters()
        if run.capped:
            source = "study" if model in STUDY else "config"
            hp["epochs"] = f"{hp['epochs']} (capped; {source} {run.configured_epochs})"
        rows.append([model, *hp.values()])
    header = ["model", "epochs", "batch size", "momentum", "learning rate", "optimizer", "dropout"]
    return ["## Hyperparameters", "", *_table(header, rows), ""]


def _results_section(chosen: dict[str, Run], runs: dict[str, list[Run]]) -> list[str]:
    rows = []
    for model, run in chosen.items():
        best, study = run.best(), STUDY.get(model)
        acc, loss, epoch = best if best else (None, None, None)
        s_acc, s_loss, s_epoch = (study.best_val_acc, study.val_loss, study.best_epoch) if study else (None,) * 3
        versions = f"{run.path.name}" + (f" (of {len(runs[model])})" if len(runs[model]) > 1 else "")
        rows.append(
            [
                model,
                versions,
                run.status,
                _pct(acc),
                _pct(s_acc),
                _diff(acc, s_acc),
                "—" if loss is None else f"{loss:.4f}",
                "—" if s_loss is None else f"{s_loss:.4f}",
                _diff(loss, s_loss, scale=1, unit=""),
                epoch or "—",
                s_epoch or "—",
            ]
        )
    header = ["model", "run", "status", "best val acc", "study", "difference", "val loss there", "study", "difference"]
    return [
        "## Best validation accuracy",
        "",
        "Each model's newest complete run (the newest run when none is complete). Differences are ours minus the",
        "study's, in percentage points for accuracy.",
        "",
        *_table([*header, "epoch", "study epoch"], rows),
        "",
    ]


def _test_section(chosen: dict[str, Run]) -> list[str]:
    rows, untested = [], []
    for model, run in chosen.items():
        if run.test is None:
            untested.append(model)
            rows.append([model, "not tested", "—", "—", "—", "—"])
            continue
        study = STUDY.get(model)
        acc, loss = run.test.get("test/acc"), run.test.get("test/loss")
        s_acc = study.test_acc if study else None
        checkpoint = Path(run.test.get("checkpoint", "")).name
        rows.append([model, _pct(acc), f"{loss:.4f}", _pct(s_acc), _diff(acc, s_acc), f"`{checkpoint}`"])
    lines = ["## Test accuracy (10,000 test images)", ""]
    lines += _table(["model", "test acc", "test loss", "study", "difference", "checkpoint"], rows)
    if untested:
        lines += ["", "Not tested: " + ", ".join(untested) + ". Test one with "]
        lines[-1] += "`python -m cifar_lightning test --config configs/MODEL.yaml` (it uses the best checkpoint)."
    scored = {m: best for m, r in chosen.items() if m in STUDY and (best := r.best()) is not None}
    if scored:
        top = max(scored, key=lambda m: scored[m][0])
        test = chosen[top].test
        lines += [
            "",
            f"Best validation accuracy among the study's models: **{top}** ({_pct(scored[top][0])}); its test "
            f"accuracy: **{_pct(test['test/acc']) if test else 'not tested'}**. "
            "The study's: model4 (85.9%), test accuracy 83.01%.",
        ]
    return [*lines, ""]


def _runs_section(chosen: dict[str, Run], runs: dict[str, list[Run]]) -> list[str]:
    lines = ["## Runs used", ""]
    for model, run in chosen.items():
        others = [f"{r.path.name} ({r.status})" for r in runs[model] if r is not run]
        line = f"- {model}: `{run.path}` ({run.status}; epochs logged: {run.epochs_done})"
        if others:
            line += "; not used: " + ", ".join(others)
        lines.append(line)
    return [*lines, ""]


def write_report(
    log_dir: str = "lightning_logs",
    out: str = "reports",
    data_dir: str = "data",
    configs_dir: str = "configs",
    val_size: int = 1000,
) -> Path:
    """Write ``report.md``, one curves PNG per model and ``samples.png`` into ``out`` (replaced whole).

    Args:
        log_dir: the folder of runs (``<model>/version_N``) that fit and test wrote.
        out: the report folder; it is rebuilt in a temporary folder and swapped in at the end.
        data_dir: the folder with ``cifar10.npz``, for the sample grid and normalization values.
        configs_dir: the configs the runs came from, to tell runs capped at fewer epochs.
        val_size: validation images at the end of the training split (the rest is the training split).
    """
    runs = collect(Path(log_dir), Path(configs_dir))
    if not runs:
        raise CifarError(
            f"no runs under {log_dir}/ (folders <model>/version_N with a config.yaml): "
            "train first, e.g. python -m cifar_lightning fit --config configs/model1.yaml, or make study"
        )
    chosen = {model: choose(found) for model, found in runs.items()}
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's folder is private; a report is for reading
    try:
        lines = [
            "# CIFAR-10 ConvNet study, regenerated",
            "",
            f"Generated {datetime.datetime.now():%Y-%m-%d %H:%M} by `python -m cifar_lightning report` "
            f"from `{log_dir}/`.",
            "",
        ]
        lines += _normalization_section(Path(data_dir), val_size, staging)
        lines += _hyperparameter_section(chosen)
        lines += _results_section(chosen, runs)
        lines += _test_section(chosen)
        lines += ["## Training curves", ""]
        for model, run in chosen.items():
            curves_figure(model, run.scalars, run.steps_per_epoch()).savefig(staging / f"{model}.png", dpi=100)
            lines += [f"![{model}]({model}.png)", ""]
        lines += _runs_section(chosen, runs)
        (staging / "report.md").write_text("\n".join(lines))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {target / 'report.md'} ({len(chosen)} models)")
    return target
