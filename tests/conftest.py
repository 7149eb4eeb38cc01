"""Small generated CIFAR-shaped data and a way to run the command line in-process."""

from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_lightning import module
from cifar_lightning.cli import main
from cifar_lightning.graph import GraphedStep

CONFIG_DIR = Path(__file__).parents[1] / "configs"
FIT = ["fit", "--config=configs/model1.yaml", "--trainer.max_epochs=2", "--trainer.limit_train_batches=6"]

PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [0, 0, 128]],
    dtype=np.int16,
)  # fmt: skip


def make_arrays(n_train: int = 640, n_test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Learnable images: each class a colour, plus noise, so a few epochs reach far above chance."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        noise = rng.integers(-60, 61, (n, 32, 32, 3))
        arrays[f"x_{split}"] = np.clip(PALETTE[y][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        arrays[f"y_{split}"] = y.astype(np.int64)
    return arrays


def data_args(data_dir: Path) -> list[str]:
    """The generated data set, as every quick run of the tests uses it."""
    return [f"--data.data_dir={data_dir}", "--data.download=false", "--data.val_size=128"]


QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "cifar10.npz", **make_arrays())
    return folder


@pytest.fixture
def run_cli(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``python -m cifar_lightning`` in-process in tmp_path (with a copy of configs/) on the generated data;
    returns the exit status."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir(exist_ok=True)
    for config in CONFIG_DIR.glob("*.yaml"):
        (tmp_path / "configs" / config.name).write_text(config.read_text())

    def run(*args: str, quick: bool = True) -> int:
        extra = [*data_args(data_dir), *QUIET] if quick else []
        try:
            return main([*args, *extra])
        except SystemExit as exit:  # the parser's own errors (exit 2)
            return exit.code

    return run


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar a run logged, read back by TensorBoard's own reader: {tag: [(step, value)]}."""
    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class EagerReplays(GraphedStep):
    """GraphedStep without a GPU: each call runs the step eagerly into the same gradients, as a replay does."""

    def __call__(self, x, y):
        self._own_grads()
        return self._zero_grads_and_step(x, y)


@pytest.fixture
def graphs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's side of CUDA graph training (the step's own backward, Lightning's skipped) on the CPU."""
    monkeypatch.setattr(module, "GraphedStep", EagerReplays)
    monkeypatch.setattr(module, "cuda_graph_blocker", lambda trainer, compiled: None)
