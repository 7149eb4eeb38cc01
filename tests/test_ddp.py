"""Two CPU processes (DDP over gloo): each trains on its own half, validation covers every image once,
and the run folder, its checkpoints and its logs are written once."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import data_args, scalars

ROOT = Path(__file__).parents[1]


def _digests(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() for image in images]


class RecordBatches(L.Callback):
    """Writes a digest of every training image, and every image of the last validation, this rank was given
    (used by the subprocesses below)."""

    def __init__(self, folder: str) -> None:
        self.folder, self.seen, self.validated = Path(folder), [], []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.seen += _digests(batch[0])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validated = []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validated += _digests(batch[0])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
        (self.folder / f"rank{trainer.global_rank}.val.json").write_text(json.dumps(self.validated))
        runs = sorted(p.name for p in Path(trainer.checkpoint_callback.dirpath).parents[1].iterdir())
        (self.folder / f"rank{trainer.global_rank}.runs").write_text(" ".join(runs))


@pytest.mark.slow
def test_two_process_ddp_shares_out_training_and_validates_on_everything(tmp_path, data_dir, run_cli):
    args = [
        sys.executable, "-m", "cifar_lightning", "fit", "--config=configs/model1.yaml",
        *data_args(data_dir), "--data.batch_size=32",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=2",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.callbacks+=test_ddp.RecordBatches", f"--trainer.callbacks.folder={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("best checkpoint:") == 1  # printed by rank 0 only

    # training: 512 images, 256 to each rank, none to both
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [len(s) for s in seen] == [256, 256]
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 512

    # one run folder, one event file, one best checkpoint and last; the second rank never took a folder
    runs = tmp_path / "lightning_logs" / "model1"
    assert {(tmp_path / f"rank{r}.runs").read_text() for r in (0, 1)} == {"version_0"}  # while training
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    run = runs / "version_0"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert (
        len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("epoch=001-val_acc=")
    )  # epochs count from 1
    # an epoch is 8 steps of 32 images per rank, where one process would take 16
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8

    # validation: 64 of the 128 images to each rank, none to both (then the synced accuracy is the whole split's)
    validated = [json.loads((tmp_path / f"rank{r}.val.json").read_text()) for r in (0, 1)]
    assert [len(v) for v in validated] == [64, 64]
    assert not set(validated[0]) & set(validated[1]) and len(set(validated[0]) | set(validated[1])) == 128
    # and one process validating the same weights gets the same accuracy
    ddp_acc = scalars(run)["val/acc"][-1][1]
    assert run_cli("validate", "--config=configs/model1.yaml", f"--ckpt_path={run}/checkpoints/last.ckpt") == 0
    single = [v for _, v in scalars(run)["val/acc"]]
    assert len(single) == 2 and single[1] == pytest.approx(ddp_acc, abs=1e-6)
    assert f"{ddp_acc:.4f}" in names[0]
