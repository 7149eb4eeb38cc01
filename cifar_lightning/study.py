"""``python -m cifar_lightning study``: fit and test every (config, seed), one after the other, continuing
where an earlier call stopped.

Each (config, seed) is one run folder. A run that finished and was tested is skipped; one that finished
untested is tested; one that was interrupted resumes from its ``last.ckpt`` (exact resume); anything else
starts a new run. Only runs trained for the same number of epochs count, so a capped quick pass
(``--epochs 1``) never becomes part of a full-length study. Every run goes through the same ``fit`` and
``test`` commands a user types, so a study gives the numbers of the runs made by hand.
"""

import shlex
import sys
from pathlib import Path

from cifar_lightning.errors import CifarError
from cifar_lightning.runs import LAST, Run, best_in, config_location, model_runs


def _matching(config: Path, seed: int, epochs: int | None) -> list[Run]:
    save_dir, name, _ = config_location(config)
    return [r for r in model_runs(save_dir, name, seed=seed) if r.max_epochs == epochs]


def plan(config: Path, seed: int, epochs: int | None) -> tuple[str, Run | None]:
    """What this (config, seed) still needs: ``done``, ``test`` (a finished run), ``resume`` or ``fit``."""
    runs = _matching(config, seed, epochs)
    finished = [r for r in runs if r.complete and best_in(r.path / "checkpoints") is not None]
    if finished:
        return ("done" if finished[-1].test else "test"), finished[-1]
    resumable = [r for r in runs if (r.path / "checkpoints" / LAST).is_file()]
    return ("resume", resumable[-1]) if resumable else ("fit", None)


def run_study(
    configs: list[str] | None = None,
    seeds: list[int] | None = None,
    epochs: int | None = None,
    args: str = "",
) -> int:
    """Fit and test each config with each seed, in order; run the same command again to continue a stopped study.

    Args:
        configs: config files (default: every ``configs/*.yaml``).
        seeds: values of ``seed_everything`` (default: 0).
        epochs: train for this many epochs instead of each config's ``max_epochs`` (a quick pass).
        args: more options for every ``fit`` and ``test``, as one string (e.g. "--trainer.enable_progress_bar false").
    """
    from cifar_lightning.cli import main as lightning

    files = [Path(c) for c in configs] if configs else sorted(Path("configs").glob("*.yaml"))
    if not files:
        raise CifarError("no configs to run: pass --configs FILE ... or run from the repository root")
    extra = shlex.split(args)
    for config in files:
        for seed in seeds or [0]:
            epochs_here = epochs or config_location(config)[2]
            common = [f"--config={config}", f"--seed_everything={seed}", *extra]
            if epochs:
                common.append(f"--trainer.max_epochs={epochs}")
            step, run = plan(config, seed, epochs_here)
            print(f"study: {config} seed {seed}: {step}" + (f" ({run.path})" if run else ""), file=sys.stderr)
            if step == "done":
                continue
            if step in ("fit", "resume"):
                resume = [f"--ckpt_path={run.path / 'checkpoints' / LAST}"] if run else []
                if (code := lightning(["fit", *common, *resume])) != 0:
                    print("study: stopped; run the same command again to continue", file=sys.stderr)
                    return code
                step, run = plan(config, seed, epochs_here)
            if step != "test" or run is None:
                raise CifarError(f"{config} seed {seed}: fit ended without a finished run to test")
            if (code := lightning(["test", *common, f"--ckpt_path={best_in(run.path / 'checkpoints')}"])) != 0:
                return code
    return 0
