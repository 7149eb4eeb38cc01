"""What many test modules share: small generated CIFAR-shaped data, quick-run options, and readers of what a run
wrote. Fixtures live in ``conftest.py``."""

import os
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_lightning.training.cuda_graphs import GraphedStep

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


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar a run logged, read back by TensorBoard's own reader: {tag: [(step, value)]}."""
    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def table_row(report: str, section: str, model: str) -> list[str]:
    """The cells of ``model``'s row in the table under ``## section`` of a report."""
    part = report.split(f"## {section}")[1].split("\n## ")[0]
    line = next(ln for ln in part.splitlines() if ln.startswith(f"| {model} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


class EagerReplays(GraphedStep):
    """GraphedStep without a GPU: each call runs the step eagerly into the same gradients, as a replay does."""

    def __call__(self, x, y):
        self._own_grads()
        return self._zero_grads_and_step(x, y)


def patterned_images(n: int = 16) -> np.ndarray:
    """uint8 [n, 32, 32, 3] images whose class probabilities change under a transpose, a mirror, a flip, a swap of
    channels or a wrong std: each channel a different gradient, an L-shaped mark near one corner, and noise; then
    the first 16 real CIFAR-10 test images where ``CIFAR10_DIR`` names a folder with ``cifar10.npz``."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:32, 0:32]
    images = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(n):
        channels = [(cols * 8 + 16 * i) % 256, rows * 6 + 3 * i, 255 - (rows + 2 * cols) * 2]
        image = np.stack(channels, axis=-1) + rng.integers(-20, 21, (32, 32, 3))
        image[3:15, 3:7] = image[11:15, 3:21] = (250, 10, 120 + 8 * i)
        images[i] = np.clip(image, 0, 255)
    real = Path(os.environ.get("CIFAR10_DIR") or "/nonexistent") / "cifar10.npz"
    if real.is_file():
        with np.load(real) as arrays:
            images = np.concatenate([images, arrays["x_test"][:16]])
    return images


def module_probabilities(checkpoint: Path, images: np.ndarray, folder: Path) -> np.ndarray:
    """The LightningModule's own class probabilities for ``images``, each normalized by the DataModule the
    checkpoint was trained with: the reference every other way of using a model must agree with."""
    import torch

    from cifar_lightning.training.classifier import CIFARClassifier
    from cifar_lightning.training.data import CIFAR10DataModule

    hparams = torch.load(checkpoint, weights_only=False)["datamodule_hyper_parameters"]
    train = np.zeros((hparams["val_size"] + 64, 32, 32, 3), np.uint8)
    labels = np.zeros(len(images), np.int64)
    np.savez(
        folder / "cifar10.npz", x_train=train, y_train=np.zeros(len(train), np.int64), x_test=images, y_test=labels
    )
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}  # LightningCLI's own entries
    data = CIFAR10DataModule(**{**hparams, "data_dir": str(folder), "download": False})
    data.setup("test")
    model = CIFARClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        return torch.cat([model.probabilities(x) for x, _ in data.test_dataloader()]).numpy()


def make_project(folder: Path) -> Path:
    """``folder`` as a user's working folder: a copy of configs/ and the generated data in ``data/``."""
    (folder / "data").mkdir(exist_ok=True)
    np.savez(folder / "data/cifar10.npz", **make_arrays())
    copy_configs(folder)
    return folder


def copy_configs(folder: Path) -> None:
    """The repository's configs/ into ``folder``, so commands run there as from the repository root."""
    (folder / "configs").mkdir(exist_ok=True)
    for config in CONFIG_DIR.glob("*.yaml"):
        (folder / "configs" / config.name).write_text(config.read_text())
