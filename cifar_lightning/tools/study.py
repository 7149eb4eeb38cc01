"""``python -m cifar_lightning study``: fit and test every (config, seed), continuing where an earlier call
stopped: one after the other here, or as concurrent Ray Tune trials (``cifar_lightning.tools.trials``).

Each (config, seed) is one run folder. A run that finished and was tested is skipped; one that finished
untested is tested; one that was interrupted resumes from its ``last.ckpt`` (exact resume); anything else
starts a new run. Only runs of the same identity count (``cifar_lightning.runs.identity``: each setting that changes
what is learned, from the config and ``--args``), so a capped quick pass (``--epochs 1``) or a run with other
hyperparameters never becomes part of a full-length study, and no run is resumed with other values. Every run
goes through the same ``fit`` and ``test`` commands a user types, so a study gives the numbers of the runs made
by hand. Studies started together divide the work: each (config, seed) is claimed with a lock while it runs, and
a study that finds one claimed does the others first, then waits for it.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonargparse.typing import NonNegativeFloat, PositiveFloat, PositiveInt

from cifar_lightning.errors import CifarError
from cifar_lightning.runs import cli
from cifar_lightning.runs.config_checks import Seed
from cifar_lightning.runs.folders import LAST, Run, best_in, model_runs
from cifar_lightning.tools.trials import enter, fit, ray_session, run_config, tune_module


def plan(config: Path, seed: int, extra: list[str]) -> tuple[str, Run | None]:
    """What this (config, seed) with these options still needs: ``done``, ``test`` (a finished run), ``resume`` or
    ``fit``. Only runs of exactly these settings count, in the folders these options make fit use."""
    options = (*extra, f"--seed_everything={seed}")
    save_dir, name, _ = cli.config_location(config, options)
    runs = [r for r in model_runs(save_dir, name, cli.experiment(config, options), seed) if not r.deviations]
    finished = [r for r in runs if r.complete and best_in(r.path / "checkpoints") is not None]
    if finished:
        return ("done" if finished[-1].test else "test"), finished[-1]
    resumable = [r for r in runs if (r.path / "checkpoints" / LAST).is_file()]
    return ("resume", resumable[-1]) if resumable else ("fit", None)


@contextlib.contextmanager
def claim(config: Path, seed: int, options: list[str], wait: bool) -> Iterator[bool]:
    """Hold the lock of this (config, seed, settings) while working on it, so that studies started together (in
    several terminals, or a cluster's job array) never fit or test one run twice; yields whether it was taken.
    The lock is a file in ``<save_dir>/.study-locks``, held with ``flock`` by the open file: a process that dies
    lets it go."""
    options = [*options, f"--seed_everything={seed}"]
    save_dir, name, _ = cli.config_location(config, tuple(options))
    settings = json.dumps(cli.experiment(config, tuple(options)).settings, sort_keys=True, default=str)
    folder = Path(save_dir) / ".study-locks"  # beside the models' folders, not among their runs
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}-{hashlib.sha256(settings.encode()).hexdigest()[:16]}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def run_one(config: Path, seed: int, epochs: int | None, extra: list[str], wait: bool = True) -> tuple[int, Run | None]:
    """Fit (or resume) and test one (config, seed) as far as it still needs; returns the exit status and the run,
    or (None, None) when another process holds it and ``wait`` is false.

    The unit of a study, sequential or a Ray Tune trial: run again after a failure, it continues the run.
    """
    options = [*extra, f"--trainer.max_epochs={epochs}"] if epochs else extra
    with claim(config, seed, options, wait) as held:
        return _run_claimed(config, seed, options) if held else (None, None)


def _run_claimed(config: Path, seed: int, options: list[str]) -> tuple[int, Run | None]:
    common = [f"--config={config}", f"--seed_everything={seed}", *options]
    step, run = plan(config, seed, options)
    print(f"study: {config} seed {seed}: {step}" + (f" ({run.path})" if run else ""), file=sys.stderr)
    if step == "done":
        return 0, run
    if step in ("fit", "resume"):
        resume = [f"--ckpt_path={run.path / 'checkpoints' / LAST}"] if run else []
        if (code := cli.main(["fit", *common, *resume])) != 0:
            return code, run
        step, run = plan(config, seed, options)
    if step != "test" or run is None:
        raise CifarError(f"{config} seed {seed}: fit ended without a finished run to test")
    code = cli.main(["test", *common, f"--ckpt_path={best_in(run.path / 'checkpoints')}"])
    return code, plan(config, seed, options)[1]


def study_trial(params: dict[str, Any], root: str, epochs: int | None, extra: list[str], cpus: float) -> None:
    """One (config, seed): fit or resume it, then test; a restart after a crash continues from ``last.ckpt``."""
    from ray import tune

    enter(root, cpus)
    config, seed = Path(params["pair"]["config"]), params["pair"]["seed"]
    code, run = run_one(config, seed, epochs, extra)
    if code != 0 or run is None:
        raise CifarError(f"{config} seed {seed}: exit status {code}")
    tune.report({"test_acc": (run.test or {}).get("test/acc"), "run": str(run.path)})


def study_trials(
    pairs: list[tuple[Path, int]],
    epochs: int | None,
    extra: list[str],
    cpus_per_trial: float,
    gpus_per_trial: float | None,
    address: str | None,
) -> int:
    """Every (config, seed) as a Ray Tune trial; returns 0 when all of them were fitted and tested."""
    tune = tune_module()
    with ray_session(address, gpus_per_trial) as gpus:
        trainable = tune.with_parameters(study_trial, root=os.getcwd(), epochs=epochs, extra=extra, cpus=cpus_per_trial)
        grid = [{"config": str(config), "seed": seed} for config, seed in pairs]
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus}),
            param_space={"pair": tune.grid_search(grid)},
            run_config=run_config("study", cli.config_location(pairs[0][0], tuple(extra))[0]),
        )
        results = fit(tuner)
    # a trial reports once, when its run is fitted and tested: one without a report was stopped (Ctrl-C)
    unfinished = [r for r in results if r.error is not None or "run" not in (r.metrics or {})]
    for result in unfinished:
        why = str(result.error).splitlines()[-1] if result.error is not None else "stopped before it finished"
        print(f"study: {result.config['pair']['config']} seed {result.config['pair']['seed']}: {why}", file=sys.stderr)
    if unfinished:
        print("study: run the same command again to continue", file=sys.stderr)
    return 1 if unfinished else 0


def _ray_installed() -> bool:
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        return False
    return True


def run_study(
    configs: list[str] | None = None,
    seeds: list[Seed] | None = None,
    epochs: PositiveInt | None = None,
    args: str = "",
    parallel: bool | None = None,
    cpus_per_trial: PositiveFloat = 1.0,
    gpus_per_trial: NonNegativeFloat | None = None,
    address: str | None = None,
) -> int:
    """Fit and test each config with each seed; run the same command again to continue a stopped study.

    Args:
        configs: config files (default: every ``configs/*.yaml``).
        seeds: values of ``seed_everything`` (default: 0).
        epochs: train for this many epochs instead of each config's ``max_epochs`` (a quick pass).
        args: more options for every ``fit`` and ``test``, as one string (e.g. "--trainer.enable_progress_bar false").
        parallel: run (config, seed) pairs as concurrent Ray Tune trials (default: when Ray Tune is installed);
            false: one after the other in this process.
        cpus_per_trial: CPU cores each trial takes (its torch threads), with Ray Tune.
        gpus_per_trial: share of a GPU each trial takes, e.g. 0.25 for four trials per GPU (default: 1 where
            the Ray cluster has GPUs, else 0), with Ray Tune.
        address: a running Ray cluster to join (``auto``, or ``HOST:6379`` of ``ray start --head``); default:
            a Ray of this machine alone.
    """
    files = [Path(c) for c in configs] if configs else sorted(Path("configs").glob("*.yaml"))
    if not files:
        raise CifarError("no configs to run: pass --configs FILE ... or run from the repository root")
    extra = shlex.split(args)
    for config in files:
        cli.config_location(config, tuple(extra))  # a missing or broken file, or a bad option, fails before any run
    pairs = list(dict.fromkeys((config, int(seed)) for config in files for seed in seeds or [0]))  # each once
    if parallel is None:
        parallel = _ray_installed()
    if parallel:
        return study_trials(pairs, epochs, extra, cpus_per_trial, gpus_per_trial, address)
    busy = []
    for wait, todo in ((False, pairs), (True, busy)):  # first what no other study holds, then wait for the rest
        for config, seed in todo:
            if wait:
                print(f"study: {config} seed {seed}: another study is on it; waiting for it", file=sys.stderr)
            code = run_one(config, seed, epochs, extra, wait)[0]
            if code is None:
                busy.append((config, seed))
            elif code != 0:
                print("study: stopped; run the same command again to continue", file=sys.stderr)
                return code
    return 0
