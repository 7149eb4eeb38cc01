"""The training forward (network and loss) and its backward as two CUDA graph replays.

A small ConvNet's training step on a GPU is bound by the host: launching its few dozen kernels
one by one from Python takes several times longer than running them. A CUDA graph records the
launches once and replays them with one call. ``torch.cuda.make_graphed_callables`` does the
recording; this module only decides what goes in and keeps the generator where it was.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

ForwardLoss = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class _Recorded(nn.Module):
    """Gives ``make_graphed_callables`` the parameters to differentiate, around a plain function."""

    def __init__(self, forward_loss: ForwardLoss, params_of: nn.Module) -> None:
        super().__init__()
        self.forward_loss, self.params_of = forward_loss, params_of

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_loss(x, y)


class GraphedForwardLoss:
    """``forward_loss(x, y) -> (loss, detached logits)`` replayed from CUDA graphs.

    Captured on the first call, for that batch's shape; a batch of any other shape (an epoch's last,
    smaller batch) runs ``forward_loss`` itself. ``loss.backward()`` replays the backward graph and
    fills the gradients of ``params_of``'s parameters as usual, so the optimizer, gradient clipping
    and Lightning's automatic optimization work unchanged. Dropout draws from the CUDA generator in
    the replay as in eager mode; the capture's warm-up passes leave the generator as they found it,
    so a resumed run draws the same masks as one that never stopped.
    """

    def __init__(self, forward_loss: ForwardLoss, params_of: nn.Module) -> None:
        self.forward_loss, self.params_of = forward_loss, params_of
        self.graphed: nn.Module | None = None
        self.shape: torch.Size | None = None

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.graphed is None:
            generator_state = torch.cuda.get_rng_state(x.device)
            recorded = _Recorded(self.forward_loss, self.params_of)
            self.graphed = torch.cuda.make_graphed_callables(recorded, (x, y))
            torch.cuda.set_rng_state(generator_state, x.device)
            self.shape = x.shape
        if x.shape != self.shape:
            return self.forward_loss(x, y)
        return self.graphed(x, y)
