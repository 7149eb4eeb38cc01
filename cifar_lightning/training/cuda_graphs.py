"""A training step's device work replayed from one CUDA graph.

A small ConvNet's training step on a GPU is bound by the host: launching its ~100 kernels (forward,
backward, bookkeeping) one by one from Python takes several times longer than running them. A CUDA
graph records the launches once and replays them with one call. This follows PyTorch's
whole-network capture recipe (warm-up on a side stream, capture, replay into static tensors) and
leaves the optimizer step outside, so any optimizer, learning-rate schedule and gradient clipping
keep working unchanged.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

Step = Callable[[Tensor, Tensor], tuple[Tensor, ...]]
_WARMUP_PASSES = 3  # PyTorch's make_graphed_callables default: lets cuDNN and autograd settle before capture


class GraphedStep:
    """``step(x, y)`` (forward, ``backward()``, in-place updates of ``module``'s buffers) replayed from CUDA graphs.

    One graph is captured per batch shape, on its first use (an epoch's last, smaller batch gets its
    own). Each replay zeroes ``module``'s gradients and accumulates the new ones into the same
    tensors, which it makes each parameter's ``.grad`` again if something (Lightning, before
    validation) set it to None. Between a replay and the optimizer step nothing may do so.
    The outputs are static tensors that the next replay overwrites.

    The warm-up passes before a capture really run ``step``: the module's buffers and the CUDA
    generator (dropout) are put back afterwards, so a replay draws what an eager step would have and
    a resumed run draws the same masks as one that never stopped.
    """

    def __init__(self, step: Step, module: nn.Module) -> None:
        self.step, self.module = step, module
        self.trained: list[nn.Parameter] = []
        self.grads: list[Tensor] = []
        self.graphs: dict[torch.Size, tuple[torch.cuda.CUDAGraph, Tensor, Tensor, tuple[Tensor, ...]]] = {}

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        self._own_grads()
        if x.shape not in self.graphs:
            self.graphs[x.shape] = self._capture(x, y)
        graph, static_x, static_y, outputs = self.graphs[x.shape]
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        return outputs

    def _own_grads(self) -> None:
        """Attach the gradient tensors every graph writes: allocated once, outside any graph's memory."""
        if not self.grads:
            self.trained = [p for p in self.module.parameters() if p.requires_grad]
            self.grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.trained]
        for p, grad in zip(self.trained, self.grads, strict=True):
            if p.grad is not grad:
                p.grad = grad

    def _zero_grads_and_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        torch._foreach_zero_(self.grads)
        return self.step(x, y)

    def _capture(self, x: Tensor, y: Tensor) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor, tuple[Tensor, ...]]:
        generator = torch.cuda.get_rng_state(x.device)
        buffers = list(self.module.buffers())
        saved = [b.clone() for b in buffers]
        static_x, static_y = x.clone(), y.clone()
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(_WARMUP_PASSES):
                self._zero_grads_and_step(static_x, static_y)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            outputs = self._zero_grads_and_step(static_x, static_y)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        for buffer, before in zip(buffers, saved, strict=True):
            buffer.copy_(before)
        torch.cuda.set_rng_state(generator, x.device)
        return graph, static_x, static_y, outputs
