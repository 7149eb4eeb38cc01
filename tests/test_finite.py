"""The finiteness guard: a diverging fit stops on the step that went wrong, at a cost paid once per N steps."""

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers import FIT

from cifar_lightning.training.classifier import CIFARClassifier
from cifar_lightning.training.finite import FiniteGuard, NonFiniteLossError


@pytest.mark.parametrize(("precision", "stops"), [("32-true", True), ("16-mixed", False)])
def test_an_overflowing_fp16_step_is_left_to_the_grad_scaler(precision, stops):
    model = CIFARClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleNamespace(
        precision=precision, optimizers=[optimizer], log_every_n_steps=0, global_step=0, current_epoch=0
    )
    guard = FiniteGuard()
    guard.on_train_start(trainer, model)
    loss = model.loss(model(torch.full((2, 3, 32, 32), math.inf)), torch.zeros(2, dtype=torch.long))
    guard.on_before_backward(trainer, model, loss)  # an overflowing forward pass: the loss is not finite
    if stops:
        with pytest.raises(NonFiniteLossError, match="not finite at step 0"):
            guard.on_before_optimizer_step(trainer, model, optimizer)
    else:
        guard.on_before_optimizer_step(trainer, model, optimizer)


def test_the_module_brings_the_guard_to_a_fit_from_python(tmp_path):
    """No CLI: ``Trainer.fit`` alone stops a fit whose loss is not finite."""
    x, y = torch.full((8, 3, 32, 32), math.nan), torch.zeros(8, dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    with pytest.raises(NonFiniteLossError, match="not finite at step 0"):
        trainer.fit(CIFARClassifier(), loader)
    assert any(isinstance(c, FiniteGuard) for c in trainer.callbacks)


def test_the_costly_parts_of_a_step_run_once_per_n_steps(run_cli, monkeypatch):
    """24 steps, logging every 8, last.ckpt every 10: the weights' finiteness check runs once per checkpoint,
    step metrics once per logging step and, where reading the device-side flag waits for a GPU, the flag is
    read on logging steps and before checkpoints only; none of them every step."""
    counts = {"weights": 0, "flag": 0, "saves": 0, "logged": 0}

    def count(owner, name, key, when=lambda *args: True):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            counts[key] += when(*args)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    count(FiniteGuard, "on_save_checkpoint", "weights")
    count(FiniteGuard, "check", "flag")
    count(L.Trainer, "save_checkpoint", "saves")
    count(CIFARClassifier, "log", "logged", lambda self, name, *args: name == "train/loss")
    monkeypatch.setattr(FiniteGuard, "flag_is_cheap_to_read", staticmethod(lambda module: False))  # as on a GPU
    args = [*FIT[:2], "--trainer.max_epochs=1", "--data.batch_size=16", "--trainer.limit_train_batches=24"]
    assert run_cli(*args, "--trainer.log_every_n_steps=8", "--resume_checkpoint.every_n_train_steps=10") == 0
    # saves: last.ckpt at steps 10 and 20 and at the epoch's end, the best checkpoint after validation
    assert counts == {"weights": 4, "flag": 3 + 4, "saves": 4, "logged": 3}


@pytest.mark.parametrize(
    ("read_every_step", "graphed"), [(True, False), (False, False), (False, True)], ids=["cpu", "as-on-gpu", "graphed"]
)
def test_a_diverging_run_stops_with_a_finite_last_checkpoint(
    run_cli, tmp_path, capsys, monkeypatch, read_every_step, graphed, request
):
    monkeypatch.setattr(FiniteGuard, "flag_is_cheap_to_read", staticmethod(lambda module: read_every_step))
    if graphed:
        request.getfixturevalue("graphs_on_the_cpu")
    code = run_cli(*FIT, "--model.optimizer.init_args.lr=1e4", "--resume_checkpoint.every_n_train_steps=1")
    assert code == 1
    err = capsys.readouterr().err
    # step 1's update overflows the weights (its loss and gradient are finite): the check before its checkpoint
    assert "is not finite at step 1 (epoch 0)" in err and "learning rate (10000) is likely too high" in err
    checkpoints = tmp_path / "lightning_logs/model1/version_0/checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["last.ckpt"]  # no epoch ended: no best one
    state = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert state["global_step"] <= 1 and all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )  # the last state before the overflow, to resume from with a lower learning rate
