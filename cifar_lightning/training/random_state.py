"""Exact resume: the global random generators travel in the checkpoint.

Lightning saves the model, optimizer, schedule and loops, but not the generators dropout (torch), NumPy and
Python draw from; without them a resumed fit draws other dropout masks than an uninterrupted one.
"""

import random
from typing import Any

import lightning as L
import numpy as np
import torch

KEY = "rng_states"


def rng_states() -> dict[str, Any]:
    """Every global generator, in a form ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomState(L.Callback):
    """Saves the generators with each checkpoint (at the top level, where earlier versions put them) and puts
    them back when training starts: after everything that runs between loading and the first step."""

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[KEY] = rng_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._to_restore = checkpoint.get(KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is not None:
            set_rng_states(self._to_restore)
            self._to_restore = None
