"""Ray Tune as the engine for many runs, shared by ``study`` (one trial per (config, seed)) and ``sweep`` (a
search with Optuna's sampler and ASHA's early stopping).

A trial is the unchanged ``fit`` (and, in a study, ``test``) in a Ray worker, so its run folder, numbers and
checkpoints are those of the same command typed by hand. Ray places the trials on CPU cores and GPU shares of
one machine or a cluster (whose nodes must see the repository at the same path), and restarts a trial that
died; a restarted study trial resumes its run from ``last.ckpt``. Needs ``pip install -e '.[tune]'``.
"""

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifar_lightning.errors import CifarError

INSTALL = "pip install -e '.[tune]'"
RETRIES = 2  # times Ray restarts a trial that died before giving up on it


def tune_module() -> Any:
    """Ray Tune, or one error saying how to install it."""
    try:
        from ray import tune
    except ImportError:
        raise CifarError(f"running trials in parallel needs Ray Tune: {INSTALL} (or pass --parallel false)") from None
    return tune


@contextlib.contextmanager
def ray_session(address: str | None, gpus_per_trial: float | None) -> Iterator[float]:
    """Join ``address`` or start a Ray of this machine for the length of a command (shut down after it, if we
    started it); yields the GPU share per trial."""
    tune_module()
    import ray

    started = not ray.is_initialized()
    if started:
        # Ray runs its workers at nice 15 so that they yield to the machine's other work; here the trials are
        # the work, and at nice 15 anything else running starves them.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        if gpus_per_trial is None:
            gpus_per_trial = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        yield gpus_per_trial
    finally:
        if started:
            ray.shutdown()


def fit(tuner: Any) -> Any:
    """``tuner.fit()`` with SIGTERM (``kill``, a scheduler's time limit) on Ray Tune's Ctrl-C path: the trials
    stop, the state is saved and the command says how to continue. Left to the handler ``ray.init`` installs in
    this process, it printed a stack dump and ended the process at once (ray 2.60)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        return tuner.fit()
    finally:
        signal.signal(signal.SIGTERM, previous)


def enter(root: str, cpus: float) -> None:
    """A trial starts in a folder of Ray's: work from the repository root, with the threads it was given and
    the command line's malloc setting (the worker process is the trial's while it runs)."""
    import torch

    from cifar_lightning.training.malloc import keep_freed_memory

    os.chdir(root)
    sys.argv = sys.argv[:1]  # the worker's own arguments are not the CLI's
    torch.set_num_threads(max(1, int(cpus)))
    keep_freed_memory()


def run_config(name: str, save_dir: str) -> Any:
    """Where Ray keeps a run of trials (beside the runs' folders) and how often it restarts a dead trial."""
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=str((Path(save_dir) / "ray").resolve()),
        failure_config=tune.FailureConfig(max_failures=RETRIES),
        verbose=1,
    )
