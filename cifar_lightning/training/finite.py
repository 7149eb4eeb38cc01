"""Stop a fit whose loss or weights stop being finite, before a checkpoint keeps them.

Reading a CUDA value waits for the GPU to finish all queued work, so the check records the first bad step on
the device and reads that flag only on logging steps and before a checkpoint is written (on the CPU, where
reading is free, before every optimizer step). A step checks its loss; the weights (all 890k numbers) are
checked only before a checkpoint is written, since a non-finite gradient with a finite loss shows in the next
step's loss.
"""

from typing import Any

import lightning as L
import torch
from torch import Tensor

from cifar_lightning.errors import CifarError


class NonFiniteLossError(CifarError):
    """Training produced a NaN or infinite loss or gradient."""


def logs_this_step(trainer: L.Trainer) -> bool:
    """Whether the Trainer writes step metrics after this batch (``trainer.log_every_n_steps``)."""
    every = trainer.log_every_n_steps
    return every > 0 and (trainer.global_step + 1) % every == 0


class FiniteGuard(L.Callback):
    """Raises :class:`NonFiniteLossError` naming the step that went wrong; ``last.ckpt`` keeps the last finite
    state. Under 16-mixed the grad scaler deals with overflows (it skips the step and lowers its scale)."""

    def __init__(self) -> None:
        self._step: Tensor | None = None
        self._first_bad: Tensor | None = None  # the first non-finite step, -1 while all are finite

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self._first_bad = torch.full((), -1, device=pl_module.device)

    def _record(self, trainer: L.Trainer, values: Tensor, step: int) -> None:
        if self._first_bad is None or trainer.precision == "16-mixed":
            return
        self._step.fill_(step)
        first, finite = self._first_bad, torch.isfinite(values).all()
        first.copy_(torch.where(finite | (first >= 0), first, self._step))

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        self._record(trainer, loss.detach(), trainer.global_step)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.flag_is_cheap_to_read(pl_module) or logs_this_step(trainer):
            self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """The weights the last step left: its loss was finite, its update may not have been."""
        norms = torch.stack(torch._foreach_norm([p.detach() for p in pl_module.parameters()]))
        self._record(trainer, norms, max(trainer.global_step - 1, 0))
        self.check(trainer)

    @staticmethod
    def flag_is_cheap_to_read(pl_module: L.LightningModule) -> bool:
        return pl_module.device.type != "cuda"

    def check(self, trainer: L.Trainer) -> None:
        """Stop with the step that went wrong; on the CPU this runs before that step reaches the weights."""
        if self._first_bad is None or (step := int(self._first_bad)) < 0:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        raise NonFiniteLossError(
            f"training stopped: the loss (or the weights its step updated) is not finite at step {step} "
            f"(epoch {trainer.current_epoch}). "
            f"The learning rate ({lr:g}) is likely too high: lower model.optimizer.init_args.lr. "
            "The last checkpoint holds the last finite state."
        )
