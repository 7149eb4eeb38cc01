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
