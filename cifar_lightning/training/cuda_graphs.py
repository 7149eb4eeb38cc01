"""A training step's device work replayed from one CUDA graph.

A small ConvNet's training step on a GPU is bound by the host: launching its ~100 kernels (forward,
backward, bookkeeping) one by one from Python takes several times longer than running them. A CUDA
graph records the launches once and replays them with one call. This follows PyTorch's
whole-network capture recipe (warm-up on a side stream, capture, replay into static tensors) and
leaves the optimizer step outside, so any optimizer, learning-rate schedule and gradient clipping
keep working unchanged.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

Step = Callable[[Tensor, Tensor], tuple[Tensor, ...]]
_WARMUP_PASSES = 3  # PyTorch's make_graphed_callables default: lets cuDNN and autograd settle before capture


class CudaRecorder:
    """The CUDA calls of a capture, and nothing else: :class:`GraphedStep` decides what is captured, what is
    put back and in which order, and a test can put a CPU recorder in this one's place to run that code."""

    def rng_state(self, device: torch.device) -> Tensor:
        return torch.cuda.get_rng_state(device)

    def set_rng_state(self, state: Tensor, device: torch.device) -> None:
        torch.cuda.set_rng_state(state, device)

    @contextlib.contextmanager
    def side_stream(self, device: torch.device) -> Iterator[Any]:
        """The warm-up runs on a stream of its own, after the work queued before it (PyTorch's recipe); the
        capture then records on the same stream."""
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            yield stream
        torch.cuda.current_stream(device).wait_stream(stream)

    def record(self, run: Callable[[], tuple[Tensor, ...]], stream: Any) -> tuple[Callable[[], None], tuple]:
        """``run`` recorded once; returns the replay and the outputs each replay writes into."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            outputs = run()
        return graph.replay, outputs


class GraphedStep:
    """``step(x, y)`` (forward, ``backward()``, in-place updates of ``module``'s buffers) replayed from CUDA graphs.

    One graph is captured per batch shape, on its first use (an epoch's last, smaller batch gets its
    own). Each replay zeroes ``module``'s gradients and accumulates the new ones into the same
    tensors, which it makes each parameter's ``.grad`` again if something (Lightning, before
    validation) set it to None. Between a replay and the optimizer step nothing may do so.
    The outputs are static tensors that the next replay overwrites.

    The warm-up passes before a capture really run ``step``: the module's buffers and the device's
    generator (dropout) are put back afterwards, so a replay draws what an eager step would have and
    a resumed run draws the same masks as one that never stopped.
    """

    def __init__(self, step: Step, module: nn.Module, recorder: CudaRecorder | None = None) -> None:
        self.step, self.module = step, module
        self.recorder = recorder or CudaRecorder()
        self.trained: list[nn.Parameter] = []
        self.grads: list[Tensor] = []
        self.graphs: dict[torch.Size, tuple[Callable[[], None], Tensor, Tensor, tuple[Tensor, ...]]] = {}

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        self._own_grads()
        if x.shape not in self.graphs:
            self.graphs[x.shape] = self._capture(x, y)
        replay, static_x, static_y, outputs = self.graphs[x.shape]
        static_x.copy_(x)
        static_y.copy_(y)
        replay()
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

    def _capture(self, x: Tensor, y: Tensor) -> tuple[Callable[[], None], Tensor, Tensor, tuple[Tensor, ...]]:
        generator = self.recorder.rng_state(x.device)
        buffers = list(self.module.buffers())
        saved = [b.clone() for b in buffers]
        static_x, static_y = x.clone(), y.clone()
        with self.recorder.side_stream(x.device) as stream:
            for _ in range(_WARMUP_PASSES):
                self._zero_grads_and_step(static_x, static_y)
        replay, outputs = self.recorder.record(lambda: self._zero_grads_and_step(static_x, static_y), stream)
        for buffer, before in zip(buffers, saved, strict=True):
            buffer.copy_(before)
        self.recorder.set_rng_state(generator, x.device)
        return replay, static_x, static_y, outputs
