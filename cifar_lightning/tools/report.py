"""``python -m cifar_lightning report``: the study's tables and figures, regenerated from the runs on disk.

It reads what ``fit`` and ``test`` left in each run folder: ``config.yaml``, the TensorBoard event
files (through TensorBoard's own reader) and ``test_results.json``. It never trains or evaluates.
Epochs are counted from 1 in the report, as in the study (checkpoint names count from 0).
"""

import math
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from cifar_lightning.atomic import atomic_write, make_folder, writing
from cifar_lightning.errors import CifarError
from cifar_lightning.runs import cli
from cifar_lightning.runs.figures import curves_figure, samples_figure
from cifar_lightning.runs.folders import Run, choose, model_runs
from cifar_lightning.runs.identity import setting
from cifar_lightning.tools.markdown import table
from cifar_lightning.training.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    NPZ_NAME,
    TRAIN_SIZE,
    VAL_SIZE,
    channel_stats,
    load_npz,
    to_tensors,
)


@dataclass(frozen=True)
class StudyModel:
    """One row of the study's published table (``tables.yaml``): how it trained and what it reached."""

    epochs: int
    batch_size: int
    momentum: float
    lr: float
    dropout: float
    best_val_acc: float
    val_loss: float
    best_epoch: int
    test_acc: float | None = None


@dataclass(frozen=True)
class Rung:
    """One rung of the ablation ladder (``tables.yaml``)."""

    config: str
    tta: bool
    adds: str


_TABLES = yaml.safe_load((Path(__file__).parent / "tables.yaml").read_text())
STUDY = {model: StudyModel(**row) for model, row in _TABLES["study"].items()}
LADDER = tuple(Rung(**rung) for rung in _TABLES["ladder"])
STUDY_BEST = max(STUDY, key=lambda m: STUDY[m].best_val_acc)  # the study's best model, its only tested one


def collect(log_dir: Path, configs_dir: Path) -> dict[str, list[Run]]:
    """Every model's runs that ``fit`` started (they have a ``config.yaml``), oldest first, each with how its
    settings differ from ``configs_dir/<model>.yaml`` (where there is one)."""
    folders = log_dir.iterdir() if log_dir.is_dir() else []
    models = sorted(p.name for p in folders if p.is_dir() and not p.name.startswith("."))  # not .study-locks
    runs = {}
    for model in models:
        config = configs_dir / f"{model}.yaml"
        if found := model_runs(log_dir, model, cli.experiment(config) if config.is_file() else None):
            runs[model] = found
    return dict(sorted(runs.items(), key=lambda item: _model_order(item[0])))


def _model_order(model: str) -> tuple[int, str]:
    return (list(STUDY).index(model), "") if model in STUDY else (len(STUDY), model)


def _pct(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:.2f}%"


def _mean_of(seeds: int) -> str:
    """What a number stands for where it may be one run's or several seeds' mean."""
    return f", mean of {seeds} seeds" if seeds > 1 else ""


def _section(title: str, about: list[str], header: list[str], rows: list[list[Any]]) -> list[str]:
    """A report section: its heading, the lines that say what it shows, its table; nothing without rows."""
    if not rows:
        return []
    return [f"## {title}", "", *([*about, ""] if about else []), *table(header, rows), ""]


def _diff(ours: float | None, theirs: float | None, scale: float = 100, unit: str = " pp") -> str:
    if ours is None or theirs is None or math.isnan(ours):
        return "—"
    return f"{scale * (ours - theirs):+.2f}{unit}"


def _normalization_section(data_dir: Path, val_size: int, out: Path) -> list[str]:
    npz = data_dir / NPZ_NAME
    lines = ["## Normalization (the study's Table 1) and sample images", ""]
    if not npz.is_file():
        print(f"warning: no {npz}: the report has no sample images or normalization values", file=sys.stderr)
        return [*lines, f"Not computed: no `{npz}` (pass `--data.data_dir` with the data the runs used).", ""]
    arrays = load_npz(npz)
    train = slice(0, len(arrays["x_train"]) - val_size)
    images, labels = to_tensors(arrays["x_train"][train], arrays["y_train"][train])
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
        *table(["statistic", "channel", "ours", "study", "difference"], rows),
        "",
        "![samples](figures/samples.png)",
        "",
    ]


def per_seed(runs: list[Run], admit_stand_ins: bool = False) -> list[Run]:
    """One run per seed, chosen by :func:`runs.choose` among that seed's runs, ordered by seed, all of one
    experiment: the config's where any run has its settings, else that of the run chosen among all. With
    ``admit_stand_ins`` (the precision rule holds), a seed without a complete run of the config's settings takes
    its complete bf16 stand-in instead, counted as of those settings."""
    same = [r for r in runs if not r.deviations]
    extra = [replace(r, deviations=[]) for r in stand_ins(runs) if r.complete] if admit_stand_ins else []
    if not same and not extra:
        same = [r for r in runs if r.deviations == choose(runs)[0].deviations]
    seeds = sorted({r.seed for r in same + extra}, key=lambda seed: (seed is None, seed or 0))

    def pick(seed: int | None) -> Run:
        own = [r for r in same if r.seed == seed]
        if not any(r.complete for r in own):
            own = [r for r in extra if r.seed == seed] or own
        return choose(own)[0]

    return [pick(seed) for seed in seeds]


def stand_ins(runs: list[Run]) -> list[Run]:
    """A model's runs that differ from its config in precision alone, trained in bf16-mixed."""
    return [
        r
        for r in runs
        if r.deviations and r.precision == STAND_IN and all(setting(d) == "trainer.precision" for d in r.deviations)
    ]


def _seeds_text(seeds: list[int | None]) -> str:
    return ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds))


def _precision_mark(run: Run) -> str:
    return "" if run.precision == "32-true" else run.precision


def _run_cell(run: Run, seeds: list[Run], all_runs: list[Run]) -> str:
    notes = [f"seed {run.seed}"] if len(seeds) > 1 else [f"of {len(all_runs)}"] if len(all_runs) > 1 else []
    notes += [mark] if (mark := _precision_mark(run)) else []
    return run.path.name + (f" ({', '.join(notes)})" if notes else "")


def _hyperparameter_section(chosen: dict[str, list[Run]]) -> list[str]:
    rows = []
    for model, seeds in chosen.items():
        hp = seeds[0].hyperparameters()
        if seeds[0].deviations and seeds[0].configured_epochs not in (None, hp["epochs"]):
            hp["epochs"] = f"{hp['epochs']} (config: {seeds[0].configured_epochs})"
        hp["seed"] = ", ".join(str(r.seed) for r in seeds)
        by_precision = {
            p: [r.seed for r in seeds if r.precision == p] for p in dict.fromkeys(r.precision for r in seeds)
        }
        hp["precision"] = next(iter(by_precision))
        if len(by_precision) > 1:
            hp["precision"] = "; ".join(f"{p} ({_seeds_text(s)})" for p, s in by_precision.items())
        rows.append([model, *hp.values()])
    header = ["model", "epochs", "batch size", "momentum", "learning rate", "optimizer", "dropout", "seed", "precision"]
    return _section("Hyperparameters", [], header, rows)


def _ours_cell(seeds: list[Run], measured: list[Run], model: StudyModel) -> str:
    """Best validation accuracy and test accuracy of a model's runs with its config's own settings, in a few words."""
    bests = _best_vals(seeds)
    if not seeds:
        estimate = estimate_hours(model, measured)
        return "not run yet" + (f" (about {estimate[0]:.1f} h at the speed of the runs here)" if estimate else "")
    if not bests:
        return _no_result(seeds)
    if len(bests) > 1:
        _, _, low, high = spread(bests)
        cell = f"{_mean_std(bests)}% ({len(bests)} seeds, {100 * low:.2f}–{100 * high:.2f}%)"
    else:
        cell = f"{_pct(bests[0])} (1 seed)"
    tests = [r.test for r in _tested(seeds)]
    if not tests:
        return f"{cell}; not tested"
    if len(tests) > 1:
        return f"{cell}; test {_mean_std([t['test/acc'] for t in tests])}%"
    acc, n = tests[0]["test/acc"], _images(tests[0])
    if not n:
        return f"{cell}; test {_pct(acc)}"
    low, high = _wilson(acc, n)
    return f"{cell}; test {_pct(acc)} (95% interval {_pct(low)}–{_pct(high)})"


def _study_table_section(chosen: dict[str, list[Run]]) -> list[str]:
    """The study's table with ours beside it: the README's copy of it is this section's table."""
    measured = [r for seeds in chosen.values() for r in seeds if r.complete]
    rows = []
    for model, study in STUDY.items():
        published = f"{100 * study.best_val_acc:.1f}% ({study.val_loss:.4f}, {study.best_epoch})"
        if study.test_acc is not None:
            published += f"; test {_pct(study.test_acc)}"
        lr = f"{study.lr:.0e}".replace("e-0", "e-")
        dropout = "none" if study.dropout == 0 else f"{study.dropout:g}"
        hyper = [study.epochs, study.batch_size, f"{study.momentum:g}", lr, dropout]
        ours = _ours_cell(chosen.get(model, []), measured, study)
        if stand := [r.seed for r in chosen.get(model, []) if r.faithful and _precision_mark(r)]:
            ours += f" ({_seeds_text(stand)} in {STAND_IN})"
        rows.append([model, *hyper, published, ours])
    header = ["config", "epochs", "batch", "momentum", "lr", "dropout", "study's best val acc (loss, epoch)"]
    about = [
        "Ours: best validation accuracy of the runs with the config's own settings (mean ± sample std over seeds,",
        "and their range), and the test accuracy of their best checkpoints; with one tested run, its binomial",
        "95% interval over the test images.",
    ]
    return _section("The study's table, reproduced", about, [*header, "reproduced here: best val acc; test acc"], rows)


def _results_section(chosen: dict[str, list[Run]], runs: dict[str, list[Run]]) -> list[str]:
    rows = []
    for model, seeds in chosen.items():
        study = STUDY.get(model)
        s_acc, s_loss, s_epoch = (study.best_val_acc, study.val_loss, study.best_epoch) if study else (None,) * 3
        for run in seeds:
            acc, loss, epoch = run.best() or (None, None, None)
            rows.append(
                [
                    model,
                    _run_cell(run, seeds, runs[model]),
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
    about = [
        "Each model's newest complete run of each seed with its config's settings (the newest run when none is",
        "complete; runs of other settings only where none has them, and so marked). Differences are ours minus the",
        "study's, in percentage points for accuracy.",
    ]
    return _section("Best validation accuracy", about, [*header, "epoch", "study epoch"], rows)


def spread(values: list[float]) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation (ddof 1), min and max."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, min(values), max(values)


def verdict(study: float | None, values: list[float]) -> str:
    """Where the study's value lies against the seeds: inside their range, or how many standard deviations out."""
    if study is None:
        return "—"
    mean, std, low, high = spread(values)
    if low <= study <= high:
        return "inside the seeds' range"
    side = "above" if study > high else "below"
    if std == 0:
        return f"{side} every seed"
    return f"{side} the range, {abs(study - mean) / std:.1f} std from the mean"


def _mean_std(values: list[float], scale: float = 100, digits: int = 2) -> str:
    """Mean ± sample standard deviation; a lone value alone, since one seed has no spread to show."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{scale * values[0]:.{digits}f}"
    mean, std, _, _ = spread(values)
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _mean_std_each(values: list[float]) -> str:
    """Percentages as "mean ± std% (each value)"; a lone value alone."""
    if len(values) == 1:
        return f"{_mean_std(values)}%"
    return f"{_mean_std(values)}% ({', '.join(f'{100 * v:.2f}' for v in values)})"


def _seeds_section(chosen: dict[str, list[Run]]) -> list[str]:
    """Models run with several seeds: the spread of their best validation accuracy and test accuracy. Only
    faithful runs are set against the study; a model without them shows its other runs' spread and what they
    are instead."""
    rows = []
    for model, seeds in chosen.items():
        faithful = [r for r in seeds if r.faithful]
        group = faithful or seeds
        bests = [b for r in group if (b := r.best()) is not None]
        if len(bests) < 2:
            continue
        accs = [b[0] for b in bests]
        _, _, low, high = spread(accs)
        study = STUDY.get(model) if faithful else None
        tests = [r.test["test/acc"] for r in group if r.test and "test/acc" in r.test]
        test_cell = _mean_std_each(tests) if tests else "—"
        where = verdict(study.best_val_acc if study else None, accs) if faithful else f"not compared: {group[0].status}"
        rows.append(
            [
                model,
                len(bests),
                f"{_mean_std(accs)}%",
                f"{100 * low:.2f}–{100 * high:.2f}%",
                ", ".join(str(b[2]) for b in bests),
                ", ".join(f"{b[1]:.4f}" for b in bests),
                _pct(study.best_val_acc) if study else "—",
                where,
                test_cell,
                _pct(study.test_acc) if study and study.test_acc else "—",
            ]
        )
    header = ["model", "seeds", "best val acc (mean ± std)", "min–max", "epoch of best", "val loss there"]
    header += ["study", "where the study's value lies", "test acc of each best checkpoint", "study test"]
    about = [
        "Best validation accuracy over seeds (sample standard deviation), the epoch of each seed's best and its",
        "validation loss there, and the test accuracy of each seed's best checkpoint (mean ± std, then per seed).",
        "The 1,000 validation images alone give a binomial standard deviation of about 1.4 points at 75%.",
    ]
    return _section("Across seeds", about, header, rows)


def _slices_section(chosen: dict[str, list[Run]]) -> list[str]:
    """Each tested run's best checkpoint on disjoint test slices the size of the validation split, as its test
    record holds them: the spread one fixed validation set of that size can show around the test accuracy."""
    rows = []
    for model, seeds in chosen.items():
        for run in seeds:
            slices = (run.test or {}).get("slice_acc")
            if not slices or len(slices) < 2:
                continue
            best = run.best()
            rows.append(
                [
                    model,
                    _run_cell(run, seeds, seeds),
                    _pct(run.test.get("test/acc")),
                    f"{len(slices)} × {run.test['slice_size']:,}",
                    f"{_mean_std(slices)}%",
                    f"{100 * min(slices):.2f}–{100 * max(slices):.2f}%",
                    _pct(best[0] if best else None),
                ]
            )
    header = ["model", "run", "test acc", "slices", "slice acc (mean ± std)", "min–max", "best val acc"]
    about = [
        "Each tested run's best checkpoint on disjoint slices of the test set as large as the validation split: one",
        "fixed validation set of that size can lie as far from the test accuracy as these slices do.",
    ]
    return _section("How much the validation images decide", about, header, rows)


# bf16-mixed stands in for fp32 in the study's tables only when these models' bf16 seeds show no difference from
# their fp32 seeds that matters (results/README.md, "Precision of the long runs"): with this many seeds a side,
# every Welch 95% interval of bf16 minus fp32 (best validation and test accuracy) holds zero, and each difference
# averaged over the models lies within the bound.
STAND_IN = "bf16-mixed"
PRECISION_MODELS = ("model1", "model7")
PRECISION_SEEDS = 3
PRECISION_BOUND = 0.01


@dataclass(frozen=True)
class PrecisionRule:
    """The bf16 comparison of each model that has both kinds of seeds, and whether bf16 stands in."""

    rows: list[list[Any]]
    verdict: str
    admitted: bool


def _accuracies(seeds: list[Run]) -> tuple[list[float], list[float], list[int]]:
    """Best validation accuracy, test accuracy and epoch of the best of each tested complete run."""
    done = [
        (b, r.test["test/acc"]) for r in seeds if r.complete and r.test and "test/acc" in r.test and (b := r.best())
    ]
    return [b[0] for b, _ in done], [t for _, t in done], [b[2] for b, _ in done]


def precision_rule(runs: dict[str, list[Run]], chosen: dict[str, list[Run]]) -> PrecisionRule:
    """bf16 against fp32 on every model with seeds of both, and the rule's verdict on ``PRECISION_MODELS``."""
    none = ([], [], [])
    pairs = {
        model: (_accuracies([r for r in chosen.get(model, []) if r.faithful]), _accuracies(per_seed(stand_ins(found))))
        for model, found in runs.items()
    }
    counts = {model: [len(side[0]) for side in pairs.get(model, (none, none))] for model in PRECISION_MODELS}
    rows, differences, failed = [], [], []
    for model, (fp32, bf16) in pairs.items():
        if not (fp32[0] and bf16[0]):
            continue
        row, outside, means = [model, f"{len(fp32[0])} / {len(bf16[0])}"], [], []
        for what, ours, theirs in (("best val", bf16[0], fp32[0]), ("test", bf16[1], fp32[1])):
            mean, interval = _difference(ours, theirs)
            shown = f" ({_interval(interval)})" if interval else ""
            row += [f"{_mean_std(theirs)}%", f"{_mean_std(ours)}%", _diff(mean, 0) + shown]
            outside += [what] if interval and not interval[0] <= 0 <= interval[1] else []
            means.append(mean)
        row.append(f"{', '.join(map(str, fp32[2]))} / {', '.join(map(str, bf16[2]))}")
        row.append(f"differs: {', '.join(outside)}" if outside else "no difference detected")
        rows.append(row)
        if model in PRECISION_MODELS:
            differences.append(means)
            failed += [f"{model} {what}" for what in outside]
    missing = [
        f"{m} has {n[0]} fp32 and {n[1]} bf16 tested seeds" for m, n in counts.items() if min(n) < PRECISION_SEEDS
    ]
    if missing:
        verdict = f"not decided: {'; '.join(missing)} (the rule asks for {PRECISION_SEEDS} each)"
        return PrecisionRule(rows, verdict, False)
    averages = [statistics.fmean(d) for d in zip(*differences, strict=True)]
    if failed:
        verdict = "not admitted: the interval excludes zero for " + ", ".join(failed)
    elif any(abs(a) > PRECISION_BOUND for a in averages):
        verdict = f"not admitted: an average difference is beyond ±{100 * PRECISION_BOUND:g} point"
    else:
        verdict = "admitted"
    val, test = (_diff(a, 0) for a in averages)
    return PrecisionRule(rows, f"{verdict} (averaged: best val {val}, test {test})", verdict == "admitted")


def _precision_section(rule: PrecisionRule) -> list[str]:
    header = ["model", "seeds (fp32 / bf16)", "best val acc, fp32", "bf16", "bf16 − fp32 (95% interval)"]
    header += ["test acc, fp32", "bf16", "bf16 − fp32 (95% interval)", "epoch of best (fp32 / bf16)", "verdict"]
    models = " and ".join(PRECISION_MODELS)
    about = [
        "Runs that differ from their config in precision alone, bf16-mixed, against its own fp32 seeds: means ±",
        "sample std over seeds, the difference with Welch's 95% t-interval (Crawford and Howell's for one seed).",
        f"bf16 stands in for fp32 when, on {models} with {PRECISION_SEEDS} seeds a side, every interval holds",
        f"zero and each difference averaged over them is within ±{100 * PRECISION_BOUND:g} point (results/README.md,",
        '"Precision of the long runs"); then a bf16 run counts as a seed of its config where the config has no',
        "complete fp32 run of that seed, marked bf16-mixed wherever it is named.",
        "",
        f"**bf16-mixed: {rule.verdict}.**",
    ]
    return _section("bf16 against fp32", about, header, rule.rows)


# The study's comparisons of best validation accuracy: (what it says, model, the model it is compared with).
# The study's own difference comes from STUDY.
CLAIMS = (
    ("dropout 0.5 over none", "model2", "model1"),
    ("momentum 0.5 and 300 epochs over model2's 50", "model3", "model2"),
    ("batch 64 and momentum 0.9 over model3", "model4", "model3"),
    ("dropout 0.2 under 0.5", "model5", "model2"),
    ("dropout 0.8 underfits: model6 under model2", "model6", "model2"),
    ("300 epochs over model7's 50", "model7b", "model7"),
)


def _tested(seeds: list[Run]) -> list[Run]:
    """The faithful runs whose test result (a full test of the best checkpoint) is there."""
    return [r for r in seeds if r.faithful and r.test and "test/acc" in r.test]


def _best_vals(seeds: list[Run]) -> list[float]:
    """Best validation accuracy of each seed's faithful run (complete, with the config's own settings)."""
    return [b[0] for r in seeds if r.faithful and (b := r.best()) is not None]


def _no_result(seeds: list[Run]) -> str:
    """Why a model's runs give no result to set against the study (when no seed has a faithful run)."""
    if not seeds:
        return "not run yet"
    own = [r for r in seeds if not r.deviations]
    if own:
        return "not finished (" + ", ".join(f"{r.epochs_done} of {r.max_epochs} epochs" for r in own) + ")"
    return "no run with the config's own settings (runs of others only)"


def _no_test_result(seeds: list[Run]) -> str:
    """Why a model's runs give no test result to set against the study."""
    return "not tested" if _best_vals(seeds) else _no_result(seeds)


def _interval_verdict(study: float, low: float, high: float) -> str:
    if low > 0 or high < 0:
        return "holds" if (low > 0) == (study > 0) else "reversed"
    return "not decided with these seeds"


def _claims_section(chosen: dict[str, list[Run]]) -> list[str]:
    """Each comparison the study makes, tested on the seeds: our mean difference with its 95% interval and a
    verdict."""
    rows = []
    for what, a, b in CLAIMS:
        study = STUDY[a].best_val_acc - STUDY[b].best_val_acc
        ours = {m: _best_vals(chosen.get(m, [])) for m in (a, b)}
        missing = [m for m in (a, b) if not ours[m]]
        cells = [what, f"{a} − {b}", _diff(study, 0)]
        if missing:
            rows.append([*cells, "—", "—", "—", "; ".join(f"{m} {_no_result(chosen.get(m, []))}" for m in missing)])
            continue
        mean, interval = _difference(ours[a], ours[b])
        seeds = f"{len(ours[a])} / {len(ours[b])}"
        if interval is None:
            rows.append([*cells, _diff(mean, 0), seeds, "—", "not decided: one seed on each side"])
            continue
        low, high = interval
        rows.append([*cells, _diff(mean, 0), seeds, _interval(interval), _interval_verdict(study, low, high)])
    rows.append(_best_model_row(chosen))
    rows.append(_test_gap_row(chosen))
    header = ["claim", "comparison", "study", "ours (mean)", "seeds", "95% interval (pp)", "verdict"]
    about = [
        "Best validation accuracy of each seed's run with the config's own settings. Our difference is the mean over",
        "seeds, with Welch's 95% t-interval where both models have two seeds or more, and Crawford and Howell's",
        "where one has a single seed (that seed taken to vary between seeds as much as the other model's do); a",
        "claim holds when the interval excludes zero on the study's side, is reversed when it excludes zero on the",
        "other. The best model's claim holds when its interval against every other model lies above zero (the one",
        "shown is against the nearest).",
    ]
    return _section("The study's claims, tested", about, header, rows)


def _difference(a: list[float], b: list[float]) -> tuple[float, tuple[float, float] | None]:
    """The mean of ``a`` minus the mean of ``b``, with its 95% interval: Welch's t where both have two seeds or
    more, Crawford and Howell's where one has a single seed, none where both have one."""
    from scipy import stats

    mean = statistics.mean(a) - statistics.mean(b)
    if max(len(a), len(b)) < 2:
        return mean, None
    if min(len(a), len(b)) < 2:
        return mean, _one_seed_interval(mean, max(a, b, key=len))
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return mean, (low, high)


def _interval(interval: tuple[float, float]) -> str:
    return f"{100 * interval[0]:+.2f} to {100 * interval[1]:+.2f}"


def _one_seed_interval(difference: float, sample: list[float]) -> tuple[float, float]:
    """The 95% interval of a difference between one seed and a sample's mean, the seed assumed to spread like the
    sample (Crawford and Howell's single-case t): one seed alone says nothing about its own spread."""
    from scipy import stats

    half = stats.t.ppf(0.975, len(sample) - 1) * statistics.stdev(sample) * (1 + 1 / len(sample)) ** 0.5
    return difference - half, difference + half


def _study_best_vals(chosen: dict[str, list[Run]]) -> dict[str, list[float]]:
    """Each study model's best validation accuracies over its faithful runs (models without them left out)."""
    return {m: bests for m in STUDY if (bests := _best_vals(chosen.get(m, [])))}


def _best_model_row(chosen: dict[str, list[Run]]) -> list[str]:
    """The study's best model against each other model with a result, as the claims above: it holds when every
    interval lies above zero, is reversed when one lies below; the interval shown is against the nearest rival."""
    best = STUDY_BEST
    bests = _study_best_vals(chosen)
    cells = [f"{best} is the best of the study's models", f"{best} against the rest", _pct(STUDY[best].best_val_acc)]
    if best not in bests:
        return [*cells, "—", "—", "—", f"{best} {_no_result(chosen.get(best, []))}"]
    against = {m: _difference(bests[best], values) for m, values in bests.items() if m != best}
    if not against:
        return [*cells, _pct(statistics.mean(bests[best])), str(len(bests[best])), "—", "no other model has a result"]
    nearest = min(against, key=lambda m: against[m][0])
    above = [m for m, (_, interval) in against.items() if interval and interval[1] < 0]
    close = [m for m, (_, interval) in against.items() if interval and interval[0] <= 0]
    lone = [m for m, (_, interval) in against.items() if interval is None]
    if above:
        verdict = f"reversed: {', '.join(above)} higher"
    elif close or lone:
        reasons = [f"{', '.join(close)} within reach with these seeds"] if close else []
        reasons += [f"one seed each with {', '.join(lone)}"] if lone else []
        verdict = f"not decided: {'; '.join(reasons)}"
    else:
        verdict = "holds"
    missing = [m for m in STUDY if m not in bests]
    if missing:
        verdict += f" (no result yet from {', '.join(missing)})"
    interval = against[nearest][1]
    shown = f"{_interval(interval)} against {nearest}" if interval else f"— (one seed each with {nearest})"
    return [*cells, _pct(statistics.mean(bests[best])), str(len(bests[best])), shown, verdict]


def _test_gap_row(chosen: dict[str, list[Run]]) -> list[str]:
    """The study's best model's test accuracy minus its best validation accuracy, paired by seed (a one-sample
    t-interval)."""
    from scipy import stats

    best = STUDY_BEST
    study = STUDY[best]
    cells = [
        f"{best}'s test accuracy under its best validation accuracy",
        "test − best val",
        _diff(study.test_acc, study.best_val_acc),
    ]
    seeds = chosen.get(best, [])
    gaps = [r.test["test/acc"] - b[0] for r in _tested(seeds) if (b := r.best()) is not None]
    if not gaps:
        return [*cells, "—", "—", "—", f"{best} {_no_test_result(seeds)}"]
    if len(gaps) < 2:
        return [*cells, _diff(gaps[0], 0), "1", "—", "not decided: one seed"]
    low, high = stats.ttest_1samp(gaps, 0).confidence_interval(0.95)
    gap = statistics.mean(gaps)
    return [
        *cells,
        _diff(gap, 0),
        str(len(gaps)),
        f"{100 * low:+.2f} to {100 * high:+.2f}",
        _interval_verdict(study.test_acc - study.best_val_acc, low, high),
    ]


def _images(test: dict[str, Any]) -> int | None:
    """How many test images a test record's accuracy is over (records before ``images`` have the confusion)."""
    if "images" in test:
        return int(test["images"])
    return sum(map(sum, test["confusion"])) if "confusion" in test else None


def _study_test_section(chosen: dict[str, list[Run]]) -> list[str]:
    """Our test accuracy of each model the study tested, with a 95% binomial (Wilson) interval per run and a
    t-interval over seeds, against the study's number: is it one our runs could have given?"""
    from scipy import stats

    rows = []
    for model, study in STUDY.items():
        if study.test_acc is None:
            continue
        cells = [model]
        seeds = chosen.get(model, [])
        runs = _tested(seeds)
        if not runs:
            rows.append([*cells, _no_test_result(seeds), "—", "—", "—", _pct(study.test_acc), "—", "—"])
            continue
        for run in runs:
            acc, n = run.test["test/acc"], _images(run.test)
            if n:
                low, high = _wilson(acc, n)
                interval, where = f"{_pct(low)}–{_pct(high)}", _where(study.test_acc, low, high)
            else:
                interval, where = "—", "—"
            row = [_run_cell(run, runs, runs), _pct(acc), f"{n:,}" if n else "—", interval, _pct(study.test_acc)]
            rows.append([*cells, *row, _diff(acc, study.test_acc), where])
        if len(runs) > 1:
            accs = [r.test["test/acc"] for r in runs]
            low, high = stats.ttest_1samp(accs, 0).confidence_interval(0.95)
            mean = statistics.mean(accs)
            over = f"mean of {len(runs)} seeds (t-interval)"
            row = [over, _pct(mean), "—", f"{_pct(low)}–{_pct(high)}", _pct(study.test_acc)]
            rows.append([*cells, *row, _diff(mean, study.test_acc), _where(study.test_acc, low, high)])
    header = ["model", "run", "test acc", "images", "95% interval", "study", "difference", "the study's value"]
    about = [
        "The study published one test accuracy. Each run's interval is the binomial (Wilson) 95% interval of its",
        "accuracy on that many images; over seeds, the t-interval of their mean, which also holds the spread",
        "between seeds. Runs of other settings than the config's are left out.",
    ]
    return _section("The study's test accuracy against ours", about, header, rows)


def _wilson(acc: float, images: int) -> tuple[float, float]:
    """The binomial (Wilson) 95% interval of an accuracy over ``images`` images."""
    from scipy import stats

    ci = stats.binomtest(round(acc * images), images).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def _where(value: float, low: float, high: float) -> str:
    if value < low:
        return "below the interval"
    return "above the interval" if value > high else "inside the interval"


def _ladder_section(chosen: dict[str, list[Run]]) -> list[str]:
    """The same network with one training trick more on each rung, each over its seeds; nothing with fewer than
    two tested rungs, which compare nothing (a study's model4 alone is in the test table)."""
    rows = []
    for rung in LADDER:
        seeds = chosen.get(rung.config, [])
        tests = [t for r in seeds if (t := r.test_tta if rung.tta else r.test) and "test/acc" in t]
        if not tests:
            continue
        epochs = sorted({str(r.max_epochs) if r.complete else f"{r.epochs_done} of {r.max_epochs}" for r in seeds})
        bests = [b[0] for r in seeds if (b := r.best()) is not None]
        accs = [t["test/acc"] for t in tests]
        ece, scaled = ([t[k] for t in tests if k in t] for k in ("test/ece", "test/ece_temperature_scaled"))
        rows.append(
            [
                rung.adds,
                f"`{rung.config}`" + (" tested with `--model.tta true`" if rung.tta else ""),
                ", ".join(epochs),
                len(tests),
                _mean_std_each(accs),
                _mean_std(ece, 1, 4),
                _mean_std(scaled, 1, 4),
                f"{_mean_std(bests)}%",
            ]
        )
    header = ["rung", "config", "epochs", "seeds", "test acc (mean ± std; each seed)", "ECE", "ECE, temp.-scaled"]
    about = [
        "Each rung is the one above plus one change; the network (890,410 parameters) is the same throughout. Test",
        "accuracy and expected calibration error (15 bins) of each seed's best checkpoint, mean ± sample standard",
        "deviation over the seeds; the epochs column is the training length of these runs (a run capped below its",
        'config\'s length has a schedule compressed to it; "2 of 5": a run stopped before its end).',
    ]
    return _section(
        "Ablation ladder: the study's network, one trick more per rung",
        about,
        [*header, "best val acc"],
        rows if len(rows) > 1 else [],
    )


def _test_section(chosen: dict[str, list[Run]], runs: dict[str, list[Run]]) -> list[str]:
    rows, untested = [], []
    for model, seeds in chosen.items():
        study = STUDY.get(model)
        for run in seeds:
            cells = [model, _run_cell(run, seeds, runs[model]), run.status]
            if run.test is None:
                untested.append(model if len(seeds) == 1 else f"{model} (seed {run.seed})")
                rows.append([*cells, "not tested", "—", "—", "—", "—", "—", "—"])
                continue
            s_acc = study.test_acc if study and run.faithful else None
            acc, loss = run.test.get("test/acc"), run.test.get("test/loss")
            checkpoint = Path(run.test.get("checkpoint") or "").name
            ece, scaled = (run.test.get(k) for k in ("test/ece", "test/ece_temperature_scaled"))
            calibration = ["—" if v is None else f"{v:.4f}" for v in (ece, scaled)]
            measured = [_pct(acc), f"{loss:.4f}", _pct(s_acc), _diff(acc, s_acc), *calibration, f"`{checkpoint}`"]
            rows.append([*cells, *measured])
    lines = ["## Test accuracy (10,000 test images)", ""]
    header = ["model", "run", "status", "test acc", "test loss", "study", "difference"]
    lines += table([*header, "ECE", "ECE, temperature-scaled", "checkpoint"], rows)
    lines += ["", "ECE: expected calibration error over 15 confidence bins; temperature scaling is fitted on the "]
    lines[-1] += "validation split only (— : tested before the package measured calibration). Only complete runs of "
    lines[-1] += "the config's own settings are set against the study."
    if untested:
        lines += ["", "Not tested: " + ", ".join(untested) + ". Test one with "]
        lines[-1] += "`python -m cifar_lightning test --config configs/MODEL.yaml` (it uses the best checkpoint)."
    means = {m: statistics.fmean(bests) for m, bests in _study_best_vals(chosen).items()}
    if means:
        top = max(means, key=means.__getitem__)
        tests = [r.test["test/acc"] for r in _tested(chosen[top])]
        test = f"**{_pct(spread(tests)[0])}**{_mean_of(len(tests))}" if tests else "not tested"
        lines += [
            "",
            f"Highest validation accuracy among the study's models: **{top}** ({_pct(means[top])}"
            f"{_mean_of(len(_best_vals(chosen[top])))}); its test accuracy: {test}. "
            f"The study's best: {STUDY_BEST} ({_pct(STUDY[STUDY_BEST].best_val_acc)}), "
            f"test accuracy {_pct(STUDY[STUDY_BEST].test_acc)}. Whether the highest is the best over seeds: "
            '"The study\'s claims, tested".',
        ]
    return [*lines, ""]


def estimate_hours(model: StudyModel, measured: list[Run]) -> tuple[float, Run] | None:
    """Hours for ``model``'s epochs from a measured run: its training time per image (from the time per step,
    so a run capped at fewer batches per epoch counts by its images) for a full training split, plus its time
    per epoch outside training (validation, checkpoints), which does not grow with the training split. The run
    is the one whose batch size is nearest on a log scale (64 is as near to 32 as to 128; ties go to the larger
    batch, then to the run folder's path, so the order of ``measured`` does not matter)."""
    timed = [
        r for r in measured if r.epoch_seconds and r.step_seconds and (r.config.get("data") or {}).get("batch_size")
    ]
    if not timed:
        return None

    def batch(r: Run) -> int:
        return r.config["data"]["batch_size"]

    run = min(timed, key=lambda r: (round(abs(math.log2(batch(r) / model.batch_size)), 9), -batch(r), str(r.path)))
    per_image = run.step_seconds / batch(run)
    outside_training = max(run.epoch_seconds - run.steps_per_epoch() * run.step_seconds, 0.0)
    return model.epochs * ((TRAIN_SIZE - VAL_SIZE) * per_image + outside_training) / 3600, run


def _not_run_section(chosen: dict[str, list[Run]]) -> list[str]:
    missing = [m for m in STUDY if m not in chosen]
    if not missing:
        return []
    measured = [r for seeds in chosen.values() for r in seeds if r.complete]
    rows = []
    for model in missing:
        estimate = estimate_hours(STUDY[model], measured)
        basis = f"{estimate[0]:.1f} h at the speed of {estimate[1].path}" if estimate else "no timed run"
        rows.append([model, STUDY[model].epochs, STUDY[model].batch_size, basis])
    about = [
        "The study's models without a run here, with the time they would take on the hardware of the runs above",
        "(each estimate: the training time per image of the measured run with the nearest batch size, for the full",
        "training split, plus that run's time per epoch outside training, such as validation).",
    ]
    return _section("Not run yet", about, ["model", "epochs", "batch size", "estimated time"], rows)


def _runs_section(chosen: dict[str, list[Run]], runs: dict[str, list[Run]]) -> list[str]:
    lines = ["## Runs used", ""]
    for model, seeds in chosen.items():
        for run in seeds:
            status = ", ".join(filter(None, (run.status, _precision_mark(run))))
            line = f"- {model}: `{run.path}` ({status}; epochs logged: {run.epochs_done})"
            if run is seeds[-1]:
                used = {r.path for r in seeds}  # by folder: a bf16 stand-in is used as a copy of itself
                others = [f"{r.path.name} ({r.status})" for r in runs[model] if r.path not in used]
                line += "; not used: " + ", ".join(others) if others else ""
            lines.append(line)
    return [*lines, ""]


def _data_dir(chosen: dict[str, list[Run]]) -> Path:
    """The data folder the runs were trained on, from their ``config.yaml`` (the first that holds the file)."""
    configs = [r.config.get("data") or {} for seeds in chosen.values() for r in seeds]
    folders = [Path(d) for data in configs if (d := data.get("data_dir"))]
    return next((f for f in folders if (f / NPZ_NAME).is_file()), folders[0] if folders else Path("data"))


def write_report(
    log_dir: str = "lightning_logs",
    out: str = "reports",
    data_dir: str | None = None,
    configs_dir: str = "configs",
    val_size: int = VAL_SIZE,
) -> Path:
    """Write ``report.md`` and ``figures/`` (one curves PNG per model, ``samples.png``) into ``out``.

    Args:
        log_dir: the folder of runs (``<model>/version_N``) that fit and test wrote.
        out: the report folder; ``report.md`` is replaced atomically and ``figures/`` whole, other files are kept.
        data_dir: the folder with ``cifar10.npz``, for the sample grid and normalization values (default: the
            ``data.data_dir`` the runs' ``config.yaml`` name).
        configs_dir: the configs the runs came from (``<model>.yaml``): runs of other settings are marked.
        val_size: validation images at the end of the training split (the rest is the training split).
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise CifarError(f"--out {out} is a file, not a folder: name a folder for report.md and figures/")
    if Path(log_dir).exists() and not Path(log_dir).is_dir():
        raise CifarError(f"--log_dir {log_dir} is a file, not a folder: name the folder fit wrote its runs in")
    runs = collect(Path(log_dir), Path(configs_dir))
    if not runs:
        raise CifarError(
            f"no runs under {log_dir}/ (folders <model>/version_N with a config.yaml): "
            "train first, e.g. python -m cifar_lightning fit --config configs/model1.yaml, or make study"
        )
    chosen = {model: per_seed(found) for model, found in runs.items()}
    rule = precision_rule(runs, chosen)
    if rule.admitted:
        chosen = {model: per_seed(found, admit_stand_ins=True) for model, found in runs.items()}
    make_folder(target, f"--out {out}")
    with writing(target):
        _write_report(target, log_dir, data_dir, val_size, chosen, runs, rule)
    print(f"wrote {target / 'report.md'} ({len(chosen)} models)")
    return target


def _write_report(
    target: Path,
    log_dir: str,
    data_dir: str | None,
    val_size: int,
    chosen: dict[str, list[Run]],
    runs: dict[str, list[Run]],
    rule: PrecisionRule,
) -> None:
    """``report.md`` and ``figures/`` under ``target``: the figures staged beside it, then both replaced."""
    staging = Path(tempfile.mkdtemp(prefix=".figures.", dir=target))
    staging.chmod(0o755)  # mkdtemp's folder is private; a report is for reading
    try:
        lines = ["# CIFAR-10 ConvNet study, regenerated", ""]
        lines += [f"Written by `python -m cifar_lightning report` from the runs under `{log_dir}/`.", ""]
        lines += _normalization_section(Path(data_dir) if data_dir else _data_dir(chosen), val_size, staging)
        lines += _hyperparameter_section(chosen)
        lines += _study_table_section(chosen)
        lines += _results_section(chosen, runs)
        lines += _seeds_section(chosen)
        lines += _precision_section(rule)
        lines += _test_section(chosen, runs)
        lines += _study_test_section(chosen)
        lines += _claims_section(chosen)
        lines += _slices_section(chosen)
        lines += _ladder_section(chosen)
        lines += ["## Training curves", ""]
        for model, seeds in chosen.items():
            curves = [(f"seed {r.seed}" if len(seeds) > 1 else "", r.scalars) for r in seeds]
            figure = curves_figure(model, curves, seeds[0].steps_per_epoch())
            figure.savefig(staging / f"{model}.png", dpi=100)
            lines += [f"![{model}](figures/{model}.png)", ""]
        lines += _not_run_section(chosen)
        lines += _runs_section(chosen, runs)
        figures = target / "figures"
        if figures.exists():
            shutil.rmtree(figures)
        os.replace(staging, figures)
        atomic_write(target / "report.md", lambda f: f.write("\n".join(lines)), mode="w")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
