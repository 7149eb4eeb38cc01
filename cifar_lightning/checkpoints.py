"""Checkpoint files: atomic writes, safe loads with clear errors, and finding a model's best or last one."""

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from cifar_lightning.errors import CifarError

BEST_PATTERN = re.compile(r"epoch=(\d+)-val_acc=([0-9.]+)\.ckpt$")
BEST_FILENAME = "epoch={epoch:03d}-val_acc={val/acc:.4f}"


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)``: a checkpoint cannot run code; a bad file is one CifarError."""
    path = Path(path)
    if not path.is_file():
        raise CifarError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CifarError(f"{path} is not a readable checkpoint (truncated or not a checkpoint: {reason})") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "pytorch-lightning_version"} <= checkpoint.keys():
        raise CifarError(f"{path} is not a Lightning checkpoint (no state_dict or version): pass one that fit wrote")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename: a crash never leaves a truncated
    file under the final name. Load with ``weights_only=True``."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @override
    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location)


def run_dirs(save_dir: str | Path, name: str) -> list[Path]:
    """A model's run folders (``version_N``), oldest first."""
    root = Path(save_dir) / name
    runs = [p for p in root.glob("version_*") if p.is_dir() and p.name.removeprefix("version_").isdigit()]
    return sorted(runs, key=lambda p: int(p.name.removeprefix("version_")))


def best_in(checkpoint_dir: Path) -> Path | None:
    """The checkpoint with the highest validation accuracy in the file name (later epoch on ties)."""
    scored = [(float(m[2]), int(m[1]), p) for p in checkpoint_dir.glob("*.ckpt") if (m := BEST_PATTERN.search(p.name))]
    return max(scored)[2] if scored else None


def find_checkpoint(save_dir: str | Path, name: str, which: str) -> Path | None:
    """``best`` or ``last`` checkpoint of the newest run of model ``name`` that has one."""
    for run in reversed(run_dirs(save_dir, name)):
        folder = run / "checkpoints"
        found = best_in(folder) if which == "best" else folder / "last.ckpt"
        if found is not None and found.is_file():
            return found
    return None


def run_of(checkpoint: Path) -> Path | None:
    """The ``version_N`` folder a checkpoint belongs to, if it sits in one's ``checkpoints/``."""
    parent = checkpoint.resolve().parent
    if parent.name == "checkpoints" and parent.parent.name.startswith("version_"):
        return parent.parent
    return None
