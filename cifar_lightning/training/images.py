"""People's own image files, made into the network's 32x32 RGB input as a person sees them.

Files from strangers are hostile input: PIL only decodes pixels (no code runs), images larger than
``MAX_PIXELS`` are refused before they are decoded (a small PNG can expand to gigabytes), and each file
that cannot be read is reported by name while the others are still classified.
"""

from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from cifar_lightning.errors import CifarError

MAX_PIXELS = 40_000_000  # a 40-megapixel photo; PIL's own limit warns at 89 M and refuses at 179 M
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as image viewers do


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB as a viewer shows the image: EXIF orientation applied, transparency over white, 16-bit and
    float greys scaled to 8 bits (PIL's ``convert`` clips them, so mid-grey became white)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        bits = 16 if img.mode.startswith("I;16") or np.asarray(img).max() > 255 else 8
        grey = np.asarray(img, dtype=np.float64) / (2**bits - 1) * 255
        img = Image.fromarray(np.clip(grey.round(), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img) * 255, 0, 255).round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(file: Path | BinaryIO) -> np.ndarray:
    """One file (or its bytes) as uint8 [32,32,3]; raises ValueError or OSError with the reason."""
    with Image.open(file) as img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{width}x{height} pixels is more than the {MAX_PIXELS:,} allowed")
        img.draft("RGB", (64, 64))  # JPEG: decode at a reduced scale, enough for 32x32
        rgb = to_rgb(img)
    small = rgb.resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(small, dtype=np.uint8)


def image_files(path: Path) -> list[Path]:
    """One file, or every file under a folder and its subfolders (hidden ones skipped), in sorted order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = (p for p in path.rglob("*") if p.is_file())
        return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts))
    raise CifarError(f"data.predict_path {path} is neither an image file nor a folder")


def load_images(path: str | Path) -> tuple[Tensor, list[Path], list[tuple[Path, str]]]:
    """uint8 [N,3,32,32] from one image or a folder tree; files that cannot be read are returned as failures."""
    images, files, failures = [], [], []
    candidates = image_files(Path(path))
    for file in candidates:
        try:
            images.append(read_image(file))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
            failures.append((file, str(err) or type(err).__name__))
            continue
        files.append(file)
    if not images:
        found = (
            f"{len(candidates)} files, none readable: {failures[0][0].name}: {failures[0][1]}"
            if failures
            else "no files"
        )
        raise CifarError(f"nothing to classify in {path} ({found}): pass an image file or a folder of images")
    return nchw(np.stack(images)), files, failures


def nchw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 images [N,H,W,C], as files and ``cifar10.npz`` hold them, in the network's layout [N,C,H,W]
    (contiguous, so a batch gather reads whole images)."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
