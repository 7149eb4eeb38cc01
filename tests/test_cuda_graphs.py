"""CUDA graph replays of the training step: when they are used, and that they train as eager mode does.

The ``gpu`` tests run with ``pytest -m gpu`` on a machine with CUDA; ``benchmarks/gpu.sh`` runs them.
On the CPU, ``CpuRecorder`` stands in for the CUDA calls of a capture, so that GraphedStep's own code (what it
captures, what it puts back and in which order) runs here; ``graphs_on_the_cpu`` runs the module's side of graphed
training with an eager stand-in for the whole replay.
"""

import contextlib
import copy
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from helpers import FIT, EagerReplays
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from cifar_lightning.training.classifier import CIFARClassifier, cuda_graph_blocker
from cifar_lightning.training.cuda_graphs import CudaRecorder, GraphedStep
from cifar_lightning.training.data import CIFAR10DataModule


def _trainer(**overrides) -> SimpleNamespace:
    fields = {
        "strategy": SimpleNamespace(root_device=torch.device("cuda", 0)),
        "world_size": 1,
        "precision": "32-true",
        "accumulate_grad_batches": 1,
    }
    return SimpleNamespace(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("overrides", "compiled", "needs"),
    [
        ({"strategy": SimpleNamespace(root_device=torch.device("cpu"))}, False, "a CUDA device"),
        ({"world_size": 2}, False, "a single device"),
        ({"precision": "bf16-mixed"}, False, "full precision"),
        ({}, True, "an uncompiled network"),
        ({"accumulate_grad_batches": 4}, False, "accumulate_grad_batches 1"),
    ],
)
def test_cuda_graphs_are_ruled_out_where_they_cannot_replay(overrides, compiled, needs):
    assert cuda_graph_blocker(_trainer(), compiled=False) is None
    assert needs in cuda_graph_blocker(_trainer(**overrides), compiled=compiled)


def test_asking_for_cuda_graphs_on_the_cpu_fails_before_the_run_starts(run_cli, tmp_path, capsys):
    assert run_cli(*FIT, "--trainer.accelerator=cpu", "--model.cuda_graph=true") == 1
    err = capsys.readouterr().err
    assert "model.cuda_graph needs a CUDA device" in err
    assert not (tmp_path / "lightning_logs").exists()


class CpuRecorder(CudaRecorder):
    """The CPU generator, no streams, and a recording that reruns the step into the outputs of its first run."""

    def rng_state(self, device):
        return torch.get_rng_state()

    def set_rng_state(self, state, device):
        torch.set_rng_state(state)

    @contextlib.contextmanager
    def side_stream(self, device):
        yield None

    def record(self, run, stream):
        outputs = run()  # unlike a CUDA capture this runs the step: GraphedStep must undo it as it does a warm-up

        def replay():
            for static, new in zip(outputs, run(), strict=True):
                static.copy_(new)

        return replay, outputs


def _bn_dropout_net() -> nn.Module:
    """Buffers a step updates (batch norm) and random draws (dropout): what a capture must put back."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 6 * 6, 10)
    )


def _step_of(net: nn.Module):
    def step(x, y):
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.detach(), logits.detach()

    return step


def test_a_graphed_step_replays_what_an_eager_step_does_with_its_buffers_and_random_draws():
    """GraphedStep's own capture code, the CUDA calls replaced: after its warm-up passes and the recording, each
    call gives the eager step's loss, gradients, batch-norm statistics and dropout masks, step after step, with
    one graph per batch shape."""
    eager_net, graphed_net = _bn_dropout_net(), _bn_dropout_net()
    graphed = GraphedStep(_step_of(graphed_net), graphed_net, CpuRecorder())
    batches = [(torch.randn(n, 3, 8, 8), torch.randint(0, 10, (n,))) for n in (16, 16, 5, 16)]
    torch.manual_seed(1)
    eager = []
    for x, y in batches:
        eager_net.zero_grad()
        loss, _ = _step_of(eager_net)(x, y)
        eager.append((loss, [p.grad.clone() for p in eager_net.parameters()], copy.deepcopy(eager_net.state_dict())))
    after_eager = torch.get_rng_state()
    torch.manual_seed(1)
    for (x, y), (loss, grads, state) in zip(batches, eager, strict=True):
        got, _ = graphed(x, y)
        assert torch.equal(got, loss)
        for p, grad in zip(graphed_net.parameters(), grads, strict=True):
            assert torch.equal(p.grad, grad)
        for key, value in graphed_net.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert torch.equal(torch.get_rng_state(), after_eager)
    assert sorted(shape[0] for shape in graphed.graphs) == [5, 16]


def _fit(data_dir: Path, root: Path, dropout: float, cuda_graph: bool, epochs=2, ckpt=None, masks_seed=None):
    """512 training images in batches of 48 leave a smaller last batch each epoch (a second graph).
    ``masks_seed`` reseeds only the CUDA generator: same initial weights and batches, other dropout masks."""
    L.seed_everything(0)
    if masks_seed is not None:
        torch.cuda.manual_seed(masks_seed)
    model = CIFARClassifier(dropout=dropout, cuda_graph=cuda_graph)
    trainer = L.Trainer(
        devices=1,
        max_epochs=epochs,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=root, save_last=True)],
    )
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=False, batch_size=48, val_size=128)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    return model


def _largest_difference(a: CIFARClassifier, b: CIFARClassifier) -> float:
    weights = a.state_dict()
    return max(float((weights[k] - v).abs().max()) for k, v in b.net.state_dict(prefix="net.").items())


def test_the_graphed_step_trains_as_lightnings_own_step(data_dir, tmp_path, graphs_on_the_cpu):
    """The graphed step runs the backward, zeroes the gradients and sums the epoch itself; on the CPU
    that must give bit-for-bit what Lightning's backward and zero_grad give, across an epoch's end
    (where Lightning sets the gradients to None before validating)."""
    eager = _fit(data_dir, tmp_path / "eager", dropout=0.5, cuda_graph=False)
    graphed = _fit(data_dir, tmp_path / "graphed", dropout=0.5, cuda_graph=True)
    assert eager._graphed is None and isinstance(graphed._graphed, EagerReplays)
    assert graphed.global_step == eager.global_step == 22
    assert _largest_difference(eager, graphed) == 0
    logged, expected = graphed.trainer.callback_metrics, eager.trainer.callback_metrics
    for name in ("train/loss_epoch", "train/acc_epoch", "val/acc"):
        assert logged[name] == expected[name], name


@pytest.mark.gpu
def test_graph_replays_train_as_eager_mode_does(data_dir, tmp_path):
    eager = _fit(data_dir, tmp_path / "eager", dropout=0.0, cuda_graph=False)
    graphed = _fit(data_dir, tmp_path / "graphed", dropout=0.0, cuda_graph=True)
    assert eager._graphed is None
    assert len(graphed._graphed.graphs) == 2  # full batches and the epoch's last, smaller one
    assert graphed.global_step == eager.global_step == 22
    difference = _largest_difference(eager, graphed)
    print(f"largest weight difference, graphed against eager: {difference:.2e}")
    assert difference < 1e-4
    for name in ("train/loss_epoch", "train/acc_epoch"):
        logged, expected = graphed.trainer.callback_metrics[name], eager.trainer.callback_metrics[name]
        assert float(logged) == pytest.approx(float(expected), abs=1e-4), name


@pytest.mark.gpu
def test_graph_replays_with_dropout_are_reproducible_and_resume_exactly(data_dir, tmp_path):
    """cuDNN's atomics make GPU runs equal only to rounding. Other dropout masks move some weight by about
    1e-3 in these 22 steps (1.2e-3 measured on the CPU), ten times the rounding allowed."""
    straight = _fit(data_dir, tmp_path / "straight", dropout=0.5, cuda_graph=True)
    again = _fit(data_dir, tmp_path / "again", dropout=0.5, cuda_graph=True)
    _fit(data_dir, tmp_path / "resumed", dropout=0.5, cuda_graph=True, epochs=1)
    resumed = _fit(data_dir, tmp_path / "resumed", 0.5, True, ckpt=str(tmp_path / "resumed/last.ckpt"))
    other_masks = _fit(data_dir, tmp_path / "other", dropout=0.5, cuda_graph=True, masks_seed=1)
    rounding = max(_largest_difference(straight, again), _largest_difference(straight, resumed))
    masks = _largest_difference(straight, other_masks)
    print(f"largest weight difference: rounding {rounding:.2e}, other dropout masks {masks:.2e}")
    assert rounding < 1e-4
    assert masks > 5e-4


class _Counting(nn.Module):
    """A dropout layer's training step that also counts its calls in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)
        self.register_buffer("calls", torch.zeros(()))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor]:
        out = F.dropout(self.layer(x), 0.5, training=True)
        out.sum().backward()
        self.calls += 1
        return (out.detach(),)


@pytest.mark.gpu
def test_a_graph_replays_new_masks_writes_fresh_gradients_in_place_and_each_shape_gets_its_own():
    counting = _Counting().cuda()
    graphed = GraphedStep(counting.step, counting)
    x, y = torch.randn(64, 4, device="cuda"), torch.zeros(64, dtype=torch.long, device="cuda")
    first = graphed(x, y)[0].clone()
    gradient = counting.layer.weight.grad
    (second,) = graphed(x, y)
    assert not torch.equal(first == 0, second == 0)  # a new mask each replay
    kept = (second != 0).float()  # d(sum of dropout(Wx + b))/dW = 2 * mask^T x: this replay's alone
    torch.testing.assert_close(counting.layer.weight.grad, 2 * kept.T @ x)
    assert counting.calls == 2  # the warm-up passes' counts were put back
    (smaller,) = graphed(x[:8], y[:8])
    assert smaller.shape == (8, 4) and len(graphed.graphs) == 2 and counting.calls == 3
    assert counting.layer.weight.grad is gradient
    torch.testing.assert_close(gradient, 2 * (smaller != 0).float().T @ x[:8])
