"""Batch augmentation as tensor operations on the training device (no per-image PIL work).

Random choices are drawn for a whole epoch from a generator hashed from (seed, epoch), so an
interrupted run that resumes mid-epoch sees exactly the augmentations it would have seen.
"""

import torch
from torch import Tensor


def flip(images: Tensor, mask: Tensor) -> Tensor:
    """Mirror left-right exactly the images whose ``mask`` entry is true."""
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


def translate(images: Tensor, shifts: Tensor, pad: int) -> Tensor:
    """Pad by ``pad`` zero pixels and crop back, image i moved by ``shifts[i] = (dy, dx)`` in [-pad, pad]."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = (shifts[:, 0] + pad)[:, None] + torch.arange(h, device=images.device)
    cols = (shifts[:, 1] + pad)[:, None] + torch.arange(w, device=images.device)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def sample(n: int, generator: torch.Generator, flip_p: float, pad: int) -> tuple[Tensor, Tensor]:
    """One epoch's choices: a flip mask [n] and shifts [n, 2]."""
    mask = torch.rand(n, generator=generator) < flip_p
    shifts = torch.randint(-pad, pad + 1, (n, 2), generator=generator)
    return mask, shifts


def cutout(images: Tensor, corners: Tensor, size: int, fill: Tensor) -> Tensor:
    """Cover a ``size`` x ``size`` square of each image with ``fill`` (one value per channel); the square of image i
    starts at ``corners[i] = (top, left)``, so it lies inside the image."""
    n, _, h, w = images.shape
    rows = torch.arange(h, device=images.device)[None, :, None]
    cols = torch.arange(w, device=images.device)[None, None, :]
    top, left = corners[:, 0, None, None], corners[:, 1, None, None]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return torch.where(inside[:, None], fill.view(1, -1, 1, 1).to(images.dtype), images)


def sample_cutout(n: int, generator: torch.Generator, size: int, image_size: int = 32) -> Tensor:
    """One epoch's square corners [n, 2], uniform over the positions that keep the square inside the image."""
    return torch.randint(0, image_size - size + 1, (n, 2), generator=generator)
