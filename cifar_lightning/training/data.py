"""CIFAR-10 kept in memory as one uint8 tensor per split, served as normalized batches by indexing it.

The tensors move to the training device once, so on a GPU a batch is an index-gather and a
multiply-add there, with no worker processes (the airbench way). The training order comes from
(seed, epoch) and the loader's position is saved in checkpoints, so a resumed run sees the same
batches as an uninterrupted one; with several processes each rank takes a disjoint share.
"""

import math
import shutil
import tempfile
import urllib.error
import zipfile
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, PositiveInt, restricted_number_type
from torch import Tensor
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity

from cifar_lightning.atomic import atomic_write
from cifar_lightning.errors import CifarError, not_a_file
from cifar_lightning.training import augment
from cifar_lightning.training.images import nchw

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The study's Table 1, computed from the training images.
CIFAR10_MEAN = (0.4913159, 0.48209456, 0.4464672)
CIFAR10_STD = (0.2470339, 0.24351034, 0.26159197)
NPZ_NAME = "cifar10.npz"
TRAIN_SIZE = 50_000
VAL_SIZE = 1000  # the study's validation split: the last 1,000 training images

CutoutSize = restricted_number_type("CutoutSize", int, [(">=", 0), ("<=", 32)], docstring="0 (off) to 32 pixels")
ValSize = restricted_number_type("ValSize", int, [(">=", 1), ("<=", TRAIN_SIZE - 1)], docstring="1 to 49,999")


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a ``cifar10.npz``; never unpickles. Any problem is one CifarError naming the file."""
    path = Path(path)
    fix = (
        f"delete {path} and make it again: the next run with data.download=true fetches CIFAR-10, or build it "
        "offline with python -m cifar_lightning data --archive cifar-10-python.tar.gz"
    )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
            if missing:
                raise CifarError(f"{path} lacks the arrays {sorted(missing)}: {fix}")
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except CifarError:
        raise
    except FileNotFoundError:
        raise CifarError(f"{path} does not exist: {fix}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise CifarError(f"{path} is truncated or not a valid .npz file ({err}): {fix}") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise CifarError(f"{path}: x_{split} must be uint8 [N,32,32,3], got {x.dtype} {list(x.shape)}: {fix}")
        if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise CifarError(f"{path}: y_{split} must be integers [{x.shape[0]}], got {y.dtype} {list(y.shape)}: {fix}")
        if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
            raise CifarError(f"{path}: y_{split} has labels outside 0..9 ({y.min()}..{y.max()}): {fix}")
    return arrays


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a crash leaves the old file or none, never a truncated one under the final name."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def download_cifar10(data_dir: str | Path, dataset: type[CIFAR10] = CIFAR10, archive: Path | None = None) -> Path:
    """Fetch the official archive through torchvision (which checks its MD5s) and keep it as ``cifar10.npz``.

    ``archive``: an official ``cifar-10-python.tar.gz`` already on disk (air-gapped machines); its MD5 is
    checked before torchvision extracts it, so only the verified official batches are ever unpickled.
    ``dataset`` names the torchvision class, whose ``url`` and checksums tests replace to serve a
    small archive from a local server. The archive and its extracted files live in a scratch
    folder that is removed whatever happens, so a failed download leaves nothing behind.
    """
    data_dir = Path(data_dir)
    if archive is not None and not check_integrity(str(archive), dataset.tgz_md5):
        problem = not_a_file(archive) if not Path(archive).is_file() else "is not the official archive (MD5 mismatch)"
        raise CifarError(f"{archive} {problem}: pass the cifar-10-python.tar.gz of the CIFAR-10 site")
    created = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=data_dir, prefix=".download-"))
    try:
        if archive is not None:
            shutil.copyfile(archive, scratch / dataset.filename)
        splits = {split: dataset(str(scratch), train=split == "train", download=True) for split in ("train", "test")}
        arrays = {}
        for split, ds in splits.items():
            arrays[f"x_{split}"] = np.ascontiguousarray(ds.data, dtype=np.uint8)
            arrays[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
        arrays["classes"] = np.array(CLASSES)
        target = data_dir / NPZ_NAME
        save_npz(target, arrays)
        return target
    except (urllib.error.URLError, OSError) as err:
        raise CifarError(
            f"could not download CIFAR-10 from {dataset.url} ({err}). To run offline, put a {NPZ_NAME} "
            f"(uint8 x_train [50000,32,32,3], y_train, x_test, y_test) in {data_dir} and set data.download=false"
        ) from None
    except RuntimeError as err:  # torchvision's "File not found or corrupted." after a checksum mismatch
        raise CifarError(f"the CIFAR-10 archive from {dataset.url} failed its checksum ({err}); try again") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created and not any(data_dir.iterdir()):
            data_dir.rmdir()  # a failed first download leaves no empty data folder behind


def from_archive(archive: str, data_dir: str = "data") -> None:
    """Build ``cifar10.npz`` from the official ``cifar-10-python.tar.gz`` (``python -m cifar_lightning data``).

    Args:
        archive: the official archive, as downloaded from the CIFAR-10 site (its MD5 is checked).
        data_dir: where to write ``cifar10.npz``, relative to the working folder.
    """
    target = download_cifar10(data_dir, archive=Path(archive))
    print(f"wrote {target.resolve()}: 50,000 training and 10,000 test images")


def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
    """Images in the network's layout (:func:`images.nchw`) and int64 labels."""
    return nchw(x), torch.from_numpy(y).long()


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over uint8 NCHW images, scaled to [0, 1] (the study's Table 1)."""
    x = images.double().div_(255).transpose(0, 1).reshape(3, -1)
    return x.mean(1).tolist(), x.std(1).tolist()


def epoch_generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    """A generator for one (seed, epoch, stream), its seed hashed from all three by NumPy's SeedSequence.

    Hashing rather than adding keeps seeds independent: with ``seed + epoch``, seed 1's second epoch
    replayed seed 2's first. ``stream`` separates the draws of one epoch (order, augmentation).
    """
    entropy = [seed % 2**64, epoch, *stream.encode()]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class EpochSampler:
    """The order of one epoch, like DistributedSampler: derived from (seed, epoch), split across ranks.

    Lightning calls ``set_epoch`` on a loader's ``sampler`` before each epoch. Training ranks get
    equal shares (the tail that does not divide evenly is dropped); evaluation keeps every item.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed, self.rank, self.world_size = size, shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, stream: str) -> torch.Generator:
        return epoch_generator(self.seed, self.epoch, stream)

    def indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.size)[self.rank :: self.world_size]
        order = torch.randperm(self.size, generator=self.generator("order"))
        return order[: self.size - self.size % self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // self.world_size
        return len(range(self.rank, self.size, self.world_size))


class TensorLoader:
    """Normalized (images, labels) batches gathered from tensors that already live on the target device.

    It is stateful in Lightning's sense (``state_dict``/``load_state_dict``): Lightning stores its
    position in every checkpoint, so resuming mid-epoch continues with the next unseen batch.
    """

    batch_sampler = None  # Lightning looks for both ``sampler`` (to call set_epoch) and this, as on a DataLoader

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        sampler: EpochSampler,
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
        flip_p: float = 0.0,
        translate: int = 0,
        cutout: int = 0,
    ) -> None:
        self.images, self.labels, self.batch_size, self.sampler = images, labels, batch_size, sampler
        std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add per pixel
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=images.device).view(1, 3, 1, 1) / std_t
        self.flip_p, self.translate, self.cutout = flip_p, translate, cutout
        self.fill = torch.tensor(mean, device=images.device).mul(255).round()  # cutout shows the mean colour
        self._start = 0  # first batch of the next iteration (non-zero after a mid-epoch restore)
        self._yielded = 0  # batches handed out in the current epoch

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: the order is drawn at the first next(), after Lightning's set_epoch.
        start, self._start = self._start, 0
        self._yielded = start
        order = self.sampler.indices().to(self.images.device)
        augmenting = self.flip_p > 0 or self.translate > 0
        if augmenting:
            draws = augment.sample(len(order), self.sampler.generator("augment"), self.flip_p, self.translate)
            masks, shifts = (t.to(self.images.device) for t in draws)
        if self.cutout:  # its own stream, so turning it on leaves the flips and shifts as they were
            corners = augment.sample_cutout(len(order), self.sampler.generator("cutout"), self.cutout)
            corners = corners.to(self.images.device)
        for b in range(start, len(self)):
            self._yielded = b + 1
            window = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[window]
            x = self.images[idx]
            if self.flip_p > 0:
                x = augment.flip(x, masks[window])
            if self.translate:
                x = augment.translate(x, shifts[window], self.translate)
            if self.cutout:
                x = augment.cutout(x, corners[window], self.cutout, self.fill)
            yield torch.addcmul(self.shift, x.float(), self.scale), self.labels[idx]

    def state_dict(self) -> dict[str, int]:
        """Epoch and first batch a resumed run must start from.

        Lightning takes batches from a sized loader one at a time (it knows the last one from
        ``len``), so every batch handed out has been trained on when a checkpoint is written.
        """
        if self._yielded >= len(self):
            return {"epoch": self.sampler.epoch + 1, "batch": 0}
        return {"epoch": self.sampler.epoch, "batch": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._start = state["batch"]


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 from ``data_dir/cifar10.npz`` (downloaded once through torchvision if absent and allowed).

    The training split is the first ``50000 - val_size`` training images, validation the last
    ``val_size``; the test split is the 10,000 test images.
    """

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        batch_size: PositiveInt = 128,
        eval_batch_size: PositiveInt = 1000,
        val_size: ValSize = VAL_SIZE,
        mean: tuple[float, float, float] = CIFAR10_MEAN,
        std: tuple[float, float, float] = CIFAR10_STD,
        seed: int = 0,
        flip_p: ClosedUnitInterval = 0.0,
        translate: NonNegativeInt = 0,
        cutout: CutoutSize = 0,
        predict_path: str | None = None,
    ) -> None:
        """
        Args:
            data_dir: folder holding (or receiving) ``cifar10.npz``.
            download: fetch CIFAR-10 when ``cifar10.npz`` is absent; ``setup`` never downloads.
            batch_size: training batch size.
            eval_batch_size: batch size for validation, test and predict (does not change results).
            val_size: how many of the last training images validate.
            mean: per-channel normalization mean, in [0, 1] units.
            std: per-channel normalization std.
            seed: seeds the training order and augmentation (the CLI links ``seed_everything`` here).
            flip_p: probability of a horizontal flip of each training image.
            translate: pixels of random pad-and-crop translation of training images (0 = off).
            cutout: side in pixels of a square covered with the mean colour at a random place in each
                training image (0 = off), after flip and translation.
            predict_path: an image file or a folder of them (subfolders included), for ``predict``; relative to
                the working folder.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["predict_path"], logger=False)
        self.data_dir = Path(data_dir)
        self.download = download
        self.batch_size, self.eval_batch_size, self.val_size = batch_size, eval_batch_size, val_size
        self.mean, self.std, self.seed = tuple(mean), tuple(std), seed
        self.flip_p, self.translate, self.cutout = flip_p, translate, cutout
        self.predict_path = predict_path
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.predict_files: list[Path] = []
        self.predict_failures: list[tuple[Path, str]] = []

    @property
    def npz_path(self) -> Path:
        return self.data_dir / NPZ_NAME

    def prepare_data(self) -> None:
        """Download if needed and allowed, then check the file, so bad data fails before any run folder exists."""
        if not self.npz_path.exists():
            if not self.download:
                raise CifarError(
                    f"no CIFAR-10 data at {self.npz_path} and data.download is false: set data.download=true, "
                    f"or point data.data_dir at a folder with a {NPZ_NAME} (see the README)"
                )
            download_cifar10(self.data_dir)
        self._load_arrays()

    def _load_arrays(self) -> dict[str, np.ndarray]:
        arrays = load_npz(self.npz_path)
        if len(arrays["x_train"]) <= self.val_size:
            raise CifarError(
                f"{self.npz_path} has {len(arrays['x_train'])} training images, "
                f"too few for data.val_size={self.val_size}"
            )
        return arrays

    def setup(self, stage: str) -> None:
        if stage == "predict":
            from cifar_lightning.training.images import load_images

            if self.predict_path is None:
                raise CifarError("predict needs --data.predict_path: an image file or a folder of images")
            images, self.predict_files, self.predict_failures = load_images(self.predict_path)
            self.splits["predict"] = (images, torch.zeros(len(images), dtype=torch.long))
            return
        arrays = self._load_arrays()
        x_train, y_train = to_tensors(arrays["x_train"], arrays["y_train"])
        cut = len(x_train) - self.val_size
        self.splits["train"] = (x_train[:cut], y_train[:cut])
        self.splits["val"] = (x_train[cut:], y_train[cut:])
        self.splits["test"] = to_tensors(arrays["x_test"], arrays["y_test"])

    def _loader(self, split: str, train: bool) -> TensorLoader:
        device, rank, world_size = torch.device("cpu"), 0, 1
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        images, labels = (t.to(device) for t in self.splits[split])
        self.splits[split] = (images, labels)
        sampler = EpochSampler(len(images), shuffle=train, seed=self.seed, rank=rank, world_size=world_size)
        return TensorLoader(
            images,
            labels,
            self.batch_size if train else self.eval_batch_size,
            sampler,
            self.mean,
            self.std,
            flip_p=self.flip_p if train else 0.0,
            translate=self.translate if train else 0,
            cutout=self.cutout if train else 0,
        )

    def train_dataloader(self) -> TensorLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> TensorLoader:
        return self._loader("predict", train=False)


def print_stats(data_dir: str = "data", val_size: int = 1000) -> None:
    """Print the per-channel mean and std of the training split (``python -m cifar_lightning stats``).

    Args:
        data_dir: the folder holding ``cifar10.npz``.
        val_size: validation images at the end of the training images (left out of the statistics).
    """
    if not (Path(data_dir) / NPZ_NAME).is_file():
        raise CifarError(
            f"no {Path(data_dir) / NPZ_NAME}: pass --data.data_dir with the folder that holds it (fit downloads it "
            "there; python -m cifar_lightning data --archive FILE builds it offline)"
        )
    arrays = load_npz(Path(data_dir) / NPZ_NAME)
    images = nchw(arrays["x_train"][: len(arrays["x_train"]) - val_size])
    mean, std = channel_stats(images)
    print(f"training split: {len(images)} images")
    print("mean:", ", ".join(f"{m:.7f}" for m in mean))
    print("std: ", ", ".join(f"{s:.7f}" for s in std))
