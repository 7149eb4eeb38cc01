"""``python -m cifar_lightning sweep``: search a config's hyperparameters as Ray Tune trials, with Optuna's
sampler proposing values and ASHA stopping weak trials early (``cifar_lightning.tools.trials``)."""

import copy
import json
import os
import shlex
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse.typing import NonNegativeFloat, PositiveFloat, PositiveInt

from cifar_lightning.atomic import atomic_write, in_folder, make_folder
from cifar_lightning.errors import CifarError, not_a_file
from cifar_lightning.runs import cli
from cifar_lightning.runs.config_checks import Seed
from cifar_lightning.runs.folders import model_runs, read_file
from cifar_lightning.tools.markdown import table
from cifar_lightning.tools.trials import enter, fit, ray_session, run_config, tune_module

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
REPORT_METRICS = {"val_acc": "val/acc", "val_loss": "val/loss"}  # Tune's names (no '/') for Lightning's


def read_space(path: Path) -> dict[str, Any]:
    """A sweep's search space: config keys as on the command line, each with one distribution of Ray Tune's,
    e.g. ``model.dropout: {uniform: [0.0, 0.5]}`` or ``data.batch_size: {choice: [32, 64, 128]}``."""
    from ray import tune

    if not path.is_file():
        raise CifarError(f"search space {path} {not_a_file(path)}: pass a YAML file such as configs/sweeps/model4.yaml")
    raw = read_file(path, yaml.safe_load, mapping=False, fix="repair the search space")
    if not isinstance(raw, dict) or not raw:
        raise CifarError(f"search space {path}: expected a mapping of config keys to {{distribution: [arguments]}}")
    space = {}
    for key, spec in raw.items():
        kind, args = next(iter(spec.items())) if isinstance(spec, dict) and len(spec) == 1 else (None, None)
        if kind not in DISTRIBUTIONS or not isinstance(args, list):
            raise CifarError(
                f"search space {path}: {key}: expected one of {', '.join(DISTRIBUTIONS)} with a list, "
                "e.g. {uniform: [0.0, 0.5]}"
            )
        if problem := _range_problem(kind, args):
            raise CifarError(f"search space {path}: {key}: {kind} {args}: {problem}")
        try:
            space[key] = tune.choice(args) if kind == "choice" else getattr(tune, kind)(*args)
        except (TypeError, ValueError) as err:
            raise CifarError(f"search space {path}: {key}: {kind} {args}: {err}") from None
    return space


def _range_problem(kind: str, args: list[Any]) -> str | None:
    """What is wrong with a distribution's arguments, found before Ray starts (Ray finds it in a trial)."""
    if kind == "choice":
        return None if args else "needs at least one value"
    if len(args) != 2 or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        return "needs two numbers, [low, high]"
    low, high = args
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        return "needs two whole numbers"
    if not low < high:
        return "low must be below high" + (" (randint draws low <= n < high)" if kind == "randint" else "")
    if kind == "loguniform" and low <= 0:
        return "low must be above 0"
    return None


def _option(key: str, value: Any) -> str:
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


class EpochReport(L.Callback):
    """Reports each epoch's validation metrics to Ray Tune once the epoch is wholly over: when the next epoch
    starts, and after the last one when training ends. A trial that ASHA stops then ends on an epoch boundary,
    with that epoch's training means logged and its checkpoints written; Ray's own Lightning callback reports
    in ``on_validation_end``, before Lightning's epoch-end work (and the checkpoints) of that epoch."""

    def __init__(self) -> None:
        self._pending: dict[str, float] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        self._pending = {name: float(metrics[key]) for name, key in REPORT_METRICS.items() if key in metrics}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report()

    def _report(self) -> None:
        if self._pending:
            from ray import tune

            metrics, self._pending = self._pending, None
            tune.report(metrics)


def sweep_trial(
    params: dict[str, Any],
    root: str,
    config: str,
    name: str,
    epochs: int | None,
    seed: int,
    extra: list[str],
    cpus: float,
) -> None:
    """One point of the search: ``fit`` with these values, reporting ``val/acc`` to Tune after each epoch
    (:class:`EpochReport`; ASHA stops the trial by it)."""
    enter(root, cpus)
    report = {"class_path": f"{EpochReport.__module__}.{EpochReport.__name__}"}
    args = [f"--config={config}", f"--seed_everything={seed}", f"--trainer.logger.init_args.name={name}"]
    args += [_option(k, v) for k, v in params.items()] + [f"--trainer.callbacks+={json.dumps(report)}", *extra]
    if epochs:
        args.append(f"--trainer.max_epochs={epochs}")
    if (code := cli.main(["fit", *args])) != 0:
        raise CifarError(f"fit exited with status {code}")


def trial_table(results: Any, keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial, best ``val/acc`` first: its values, best val/acc, the epoch of it, epochs run, time."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        values = {k: result.config[k] for k in keys}
        if history is None or "val_acc" not in history:
            rows.append({**values, "val/acc": None, "epoch": None, "epochs": 0, "s": None})
            continue
        best = history["val_acc"].idxmax()
        rows.append(
            {
                **values,
                "val/acc": float(history["val_acc"][best]),
                "epoch": int(history["training_iteration"][best]),
                "epochs": int(history["training_iteration"].max()),
                "s": float(history["time_total_s"].max()),
            }
        )
    return sorted(rows, key=lambda r: -1.0 if r["val/acc"] is None else r["val/acc"], reverse=True)


def _markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    head = list(rows[0])
    return "\n".join(table(head, [[cell(r[k]) for k in head] for r in rows])) + "\n"


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def sweep(
    config: str,
    space: str,
    trials: PositiveInt = 8,
    epochs: PositiveInt | None = None,
    grace_epochs: PositiveInt = 1,
    name: str | None = None,
    seed: Seed = 0,
    cpus_per_trial: PositiveFloat = 1.0,
    gpus_per_trial: NonNegativeFloat | None = None,
    address: str | None = None,
    args: str = "",
    out: str | None = None,
) -> int:
    """Search a config's hyperparameters with Ray Tune: Optuna proposes values, ASHA stops weak trials early.

    Every trial is a run folder ``<save_dir>/<name>/version_N`` (TensorBoard shows them all); the table of
    trials (best first) goes to ``trials.md`` there, and the best values, written into the base config, to
    ``best.yaml`` (or ``out``), ready for ``fit --config``.

    Args:
        config: the base config, e.g. configs/model4.yaml.
        space: YAML file of config keys and distributions, e.g. ``model.dropout: {uniform: [0.0, 0.5]}``
            (distributions: uniform, loguniform, randint, choice).
        trials: number of trials.
        epochs: epochs per trial (default: the config's max_epochs).
        grace_epochs: epochs every trial runs before ASHA may stop it.
        name: run folder name of the trials (default: the config's name and "-sweep"); must be new.
        seed: seed_everything of every trial, and of Optuna's sampler.
        cpus_per_trial: CPU cores each trial takes.
        gpus_per_trial: share of a GPU each trial takes (default: 1 where the cluster has GPUs, else 0).
        address: a running Ray cluster to join (``auto`` or ``HOST:6379``).
        args: more options for every trial's fit, as one string.
        out: the file to write the best config to, or a folder for ``best.yaml`` (default: the trials' folder).
    """
    tune = tune_module()
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    extra = shlex.split(args)
    save_dir, base_name, configured_epochs = cli.config_location(config, tuple(extra))
    name = name or f"{base_name}-sweep"
    folder = Path(save_dir) / name
    if model_runs(save_dir, name):
        raise CifarError(f"{folder} already holds runs: pass a new --name for this sweep")
    domains = read_space(Path(space))
    try:  # the base config with sampled values parses: a mistyped key fails here, not in every trial
        cli.config_location(config, (*extra, *(_option(k, d.sample()) for k, d in domains.items())))
    except CifarError as err:
        raise CifarError(f"search space {space}: {err}") from None
    target = in_folder(out, "best.yaml") if out else folder / "best.yaml"
    if out:
        make_folder(target.parent, f"--out {out}")  # now, not after the trials
    epochs_here = epochs or configured_epochs
    with ray_session(address, gpus_per_trial) as gpus:
        trainable = tune.with_parameters(
            sweep_trial,
            root=os.getcwd(),
            config=config,
            name=name,
            epochs=epochs,
            seed=seed,
            extra=extra,
            cpus=cpus_per_trial,
        )
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus}),
            param_space=domains,
            tune_config=tune.TuneConfig(
                metric="val_acc",
                mode="max",
                num_samples=trials,
                search_alg=OptunaSearch(seed=seed),
                scheduler=ASHAScheduler(max_t=epochs_here, grace_period=grace_epochs, reduction_factor=2),
            ),
            run_config=run_config(name, save_dir),
        )
        results = fit(tuner)
    rows = trial_table(results, list(domains))
    if rows[0]["val/acc"] is None:
        raise CifarError(f"no trial of sweep {name} reported a validation accuracy: see the errors above")
    table = _markdown(rows)
    atomic_write(folder / "trials.md", lambda file: file.write(table), "w")
    print(table)

    # the winning trial's whole resolved config: what it trained with, --args and the seed included
    winner = [*extra, f"--seed_everything={seed}", *(_option(k, rows[0][k]) for k in domains)]
    best = copy.deepcopy(cli.resolved_config(config, (*winner, f"--trainer.max_epochs={epochs_here}")))
    _set(best, "trainer.logger.init_args.name", f"{name}-best")
    header = (
        f"# The best of sweep {name!r}: {trials} trials of {config} over {space} ({epochs_here} epochs each),\n"
        f"# best val/acc {rows[0]['val/acc']:.4f} at epoch {rows[0]['epoch']}; all trials: {folder / 'trials.md'}.\n"
    )
    atomic_write(target, lambda file: file.write(header + yaml.safe_dump(best, sort_keys=False)), "w")
    print(f"sweep: best config written to {target}; train it with: python -m cifar_lightning fit --config {target}")
    return 0
