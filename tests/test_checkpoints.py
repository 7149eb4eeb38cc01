"""Checkpoints: the best by val/acc, a fresh last.ckpt at every boundary, exact resume from each of them."""

import json
import os
import signal

import pytest
import torch
from helpers import FIT, scalars

from cifar_lightning.runs.folders import BEST_PATTERN
from cifar_lightning.training.classifier import CIFARClassifier

RUN = "lightning_logs/model2/version_0"  # model2 has dropout, so the generators' states matter
BASE = ["fit", "--config=configs/model2.yaml", "--trainer.limit_train_batches=4", "--trainer.log_every_n_steps=1"]


def _last(tmp_path, run=RUN) -> dict:
    return torch.load(tmp_path / run / "checkpoints/last.ckpt", weights_only=True)


def _same_training(a: dict, b: dict, logged_a: dict, logged_b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for tag in ("val/acc", "val/loss", "train/loss", "train/loss_epoch", "train/acc_epoch"):
        assert dict(logged_a[tag]) == dict(logged_b[tag]), tag


def test_best_is_the_highest_val_acc_and_test_reports_that_checkpoint(run_cli, tmp_path, monkeypatch, capsys):
    """Epochs with different val/acc, the best in the middle: ``best`` must be that epoch's checkpoint."""
    accs = iter([0.30, 0.70, 0.50, 0.40])

    def scripted_val_acc(self):
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            value = torch.tensor(next(accs))
            self.val_acc.compute = lambda: value

    monkeypatch.setattr(CIFARClassifier, "on_validation_epoch_start", scripted_val_acc, raising=False)
    assert run_cli(*FIT, "--trainer.max_epochs=4") == 0
    names = [p.name for p in (tmp_path / "lightning_logs/model1/version_0/checkpoints").glob("epoch=*")]
    assert names == ["epoch=002-val_acc=0.7000.ckpt"]  # epochs count from 1
    assert "(epoch 2, val/acc 0.7000)" in capsys.readouterr().out
    best = torch.load(tmp_path / "lightning_logs/model1/version_0/checkpoints" / names[0], weights_only=True)
    assert best["global_step"] == 12  # the end of epoch 2 of 6 batches each

    assert run_cli("test", "--config=configs/model1.yaml", "--ckpt_path=best") == 0
    record = json.loads((tmp_path / "lightning_logs/model1/version_0/test_results.json").read_text())
    assert BEST_PATTERN.search(record["checkpoint"])[1] == "002"


def test_last_ckpt_is_each_epochs_end_even_when_val_acc_stops_improving(run_cli, tmp_path, monkeypatch):
    # lr 1e-12: the weights barely move, val/acc is the same every epoch, so no epoch after the first improves
    quiet = [*BASE, "--trainer.max_epochs=3", "--model.optimizer.init_args.lr=1e-12"]
    assert run_cli(*quiet) == 0
    assert _last(tmp_path)["global_step"] == 12
    accs = [v for _, v in scalars(tmp_path / RUN)["val/acc"]]
    assert len(accs) == 3 and accs[1:] == accs[:1] * 2

    (tmp_path / "lightning_logs").rename(tmp_path / "whole")

    def crash_in_epoch_3(self, outputs, batch, batch_idx):
        if self.global_step == 10:
            raise RuntimeError("power cut")

    monkeypatch.setattr(CIFARClassifier, "on_train_batch_end", crash_in_epoch_3)
    with pytest.raises(RuntimeError, match="power cut"):
        run_cli(*quiet)
    assert _last(tmp_path)["global_step"] == 8  # the end of epoch 2, which did not improve val/acc


def test_a_crash_after_an_epochs_last_batch_resumes_with_that_epochs_validation(run_cli, tmp_path, monkeypatch):
    """A step checkpoint on an epoch's last batch would be resumed as a finished epoch whose validation never ran."""
    assert run_cli(*BASE, "--trainer.max_epochs=3", "--resume_checkpoint.every_n_train_steps=2") == 0
    whole = _last(tmp_path), scalars(tmp_path / RUN)

    (tmp_path / "lightning_logs").rename(tmp_path / "whole")
    crashed = []

    def crash_in_first_validation(self):
        if self.trainer.global_step == 4 and not self.trainer.sanity_checking and not crashed:
            crashed.append(True)
            raise RuntimeError("power cut")

    monkeypatch.setattr(CIFARClassifier, "on_validation_start", crash_in_first_validation)
    with pytest.raises(RuntimeError, match="power cut"):
        run_cli(*BASE, "--trainer.max_epochs=3", "--resume_checkpoint.every_n_train_steps=2")
    assert _last(tmp_path)["global_step"] == 2  # not 4: that step ends an epoch, whose validation had not run
    assert (
        run_cli(*BASE, "--trainer.max_epochs=3", "--resume_checkpoint.every_n_train_steps=2", "--ckpt_path=last") == 0
    )
    _same_training(whole[0], _last(tmp_path), whole[1], scalars(tmp_path / RUN))


def test_resuming_a_run_stopped_by_max_steps_continues_its_epoch(run_cli, tmp_path):
    assert run_cli(*BASE, "--trainer.max_epochs=5", "--trainer.max_steps=10") == 0
    whole = _last(tmp_path), scalars(tmp_path / RUN)
    (tmp_path / "lightning_logs").rename(tmp_path / "whole")

    assert run_cli(*BASE, "--trainer.max_epochs=5", "--trainer.max_steps=6") == 0  # stops in epoch 2
    assert _last(tmp_path)["global_step"] == 6
    assert run_cli(*BASE, "--trainer.max_epochs=5", "--trainer.max_steps=10", "--ckpt_path=last") == 0
    resumed = _last(tmp_path), scalars(tmp_path / RUN)
    _same_training(whole[0], resumed[0], whole[1], resumed[1])
    assert [s for s, _ in resumed[1]["train/loss_epoch"]] == [3, 7]  # no phantom epoch, nothing NaN


def test_sigterm_on_an_epoch_boundary_resumes_exactly(run_cli, tmp_path, monkeypatch, default_sigterm):
    assert run_cli(*BASE, "--trainer.max_epochs=3") == 0
    whole = _last(tmp_path), scalars(tmp_path / RUN)
    (tmp_path / "lightning_logs").rename(tmp_path / "whole")

    on_train_batch_end = CIFARClassifier.on_train_batch_end

    def sigterm_at_step_4(self, outputs, batch, batch_idx):
        on_train_batch_end(self, outputs, batch, batch_idx)
        if self.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(CIFARClassifier, "on_train_batch_end", sigterm_at_step_4)
    assert run_cli(*BASE, "--trainer.max_epochs=3") == 130
    monkeypatch.setattr(CIFARClassifier, "on_train_batch_end", on_train_batch_end)
    assert run_cli(*BASE, "--trainer.max_epochs=3", "--ckpt_path=last") == 0
    _same_training(whole[0], _last(tmp_path), whole[1], scalars(tmp_path / RUN))
