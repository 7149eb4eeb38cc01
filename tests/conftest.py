"""Fixtures: a folder of generated data, one short trained run shared by many tests, the command line run
in-process, CUDA-graph training on the CPU."""

import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import FIT, QUIET, EagerReplays, copy_configs, data_args, make_arrays, make_project

from cifar_lightning.runs.cli import main
from cifar_lightning.training import classifier


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "cifar10.npz", **make_arrays())
    return folder


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with configs/ and generated data in which model1 was fitted for two short epochs, made once."""
    folder = make_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert main([*FIT, *data_args(folder / "data"), *QUIET]) == 0
    return folder


@pytest.fixture
def run_cli(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``python -m cifar_lightning`` in-process in tmp_path (with a copy of configs/) on the generated data;
    returns the exit status."""
    monkeypatch.chdir(tmp_path)
    copy_configs(tmp_path)

    def run(*args: str, quick: bool = True) -> int:
        extra = [*data_args(data_dir), *QUIET] if quick else []
        try:
            return main([*args, *extra])
        except SystemExit as exit:  # the parser's own errors (exit 2)
            return exit.code

    return run


@pytest.fixture
def graphs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's side of CUDA graph training (the step's own backward, Lightning's skipped) on the CPU."""
    monkeypatch.setattr(classifier, "GraphedStep", EagerReplays)
    monkeypatch.setattr(classifier, "cuda_graph_blocker", lambda trainer, compiled: None)


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    """SIGTERM handled as in a fresh ``python -m cifar_lightning``: pytest-xdist's workers install a handler of
    their own, which Lightning would call after its own (and so exit the worker) instead of stopping the run."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs the command line (``run_cli``) trains a model, so it belongs to the full tier; the fast
    tier keeps the unit tests and ``test_smoke.py``, whose commands share one trained run."""
    for item in items:
        if "run_cli" in item.fixturenames and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    # tests grouped on one xdist worker (the Ray trials, minutes in a row) go first, so the other workers'
    # tests run beside them instead of after them
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
