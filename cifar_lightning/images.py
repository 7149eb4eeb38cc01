"""People's own image files, made into the network's 32x32 RGB input."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from cifar_lightning.errors import CifarError


def load_images(path: str | Path) -> tuple[Tensor, list[Path], list[tuple[Path, str]]]:
    """uint8 [N,3,32,32] from one image or every file of a folder; files PIL cannot read are returned as failures."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        candidates = [path]
    else:
        raise CifarError(f"data.predict_path {path} is neither an image file nor a folder")
    images, files, failures = [], [], []
    for file in candidates:
        try:
            with Image.open(file) as img:
                rgb = img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=None)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            failures.append((file, str(err) or type(err).__name__))
            continue
        images.append(np.asarray(rgb, dtype=np.uint8))
        files.append(file)
    if not images:
        return torch.empty(0, 3, 32, 32, dtype=torch.uint8), files, failures
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), files, failures
