"""A run killed mid-epoch and resumed with ``--ckpt_path last`` ends exactly where an uninterrupted one does."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import data_args, scalars

CONFIG = Path(__file__).parents[1] / "configs" / "model2.yaml"  # has dropout, so its generator state matters


def _fit(cwd: Path, data_dir: Path, *extra: str, kill_at: int | None = None) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "cifar_lightning", "fit", f"--config={CONFIG}", *data_args(data_dir),
        "--trainer.max_epochs=4", "--trainer.log_every_n_steps=3",
        "--resume_checkpoint.every_n_train_steps=5", "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip
    here = Path(__file__)  # the repository, and tests/ for dying.py
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1]), str(here.parent)])}
    if kill_at is not None:
        env["KILL_AT_STEP"] = str(kill_at)
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _final_state(run: Path) -> tuple[dict, dict[str, dict[int, float]]]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    # a resumed run logs the steps between its last checkpoint and the kill twice: keep the latest value
    logged = {tag: dict(values) for tag, values in scalars(run).items()}
    return ckpt, logged


AUGMENTED = ["--data.flip_p=0.5", "--data.translate=2", "--data.cutout=8"]


@pytest.mark.slow
@pytest.mark.parametrize("augmentation", [[], AUGMENTED], ids=["plain", "augmented"])
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, data_dir, augmentation):
    """Killed at step 7 of 16 in the first epoch, two steps after ``last.ckpt`` of step 5: the resumed run must
    replay steps 6 and 7 with the same batches, augmentation draws and dropout masks."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole = _fit(tmp_path / "a", data_dir, *augmentation)
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

    killable = [*augmentation, "--trainer.callbacks+=dying.KillAt"]
    killed = _fit(tmp_path / "b", data_dir, *killable, kill_at=7)
    out = killed.communicate(timeout=300)[0]
    assert killed.returncode == -signal.SIGKILL, out
    last = tmp_path / "b/lightning_logs/model2/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 5  # mid-epoch, with two steps lost

    resumed = _fit(tmp_path / "b", data_dir, *killable, "--ckpt_path=last")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert "fit: using" in out

    a, a_logged = _final_state(tmp_path / "a/lightning_logs/model2/version_0")
    b, b_logged = _final_state(tmp_path / "b/lightning_logs/model2/version_0")
    assert a["global_step"] == b["global_step"] == 16 * 4
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    a_opt, b_opt = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert a_opt.keys() == b_opt.keys()
    for sa, sb in zip(a_opt.values(), b_opt.values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    for tag in ("val/acc", "val/loss", "train/loss", "train/loss_epoch", "train/acc_epoch"):
        assert a_logged[tag] == b_logged[tag], tag


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_stops_after_the_batch_saves_and_the_resume_matches(tmp_path, data_dir, sig):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole = _fit(tmp_path / "a", data_dir)
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

    run = _fit(tmp_path / "b", data_dir)
    last = tmp_path / "b/lightning_logs/model2/version_0/checkpoints/last.ckpt"
    while not last.exists() and run.poll() is None:
        time.sleep(0.01)
    run.send_signal(sig)
    out = run.communicate(timeout=120)[0]
    assert run.returncode == 130, out
    assert "Traceback" not in out
    assert "resume with: python -m cifar_lightning fit" in out and "--ckpt_path last" in out
    state = torch.load(last, weights_only=True)
    assert 0 < state["global_step"] < 16 * 4 and "rng_states" in state

    resumed = _fit(tmp_path / "b", data_dir, "--ckpt_path=last")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    for noise in ("Tip:", "treespec", "weights_only", "exists and is not empty", "Warning", "warn("):
        assert noise not in out, noise  # nothing that is not the user's to act on
    a, _ = _final_state(tmp_path / "a/lightning_logs/model2/version_0")
    b, _ = _final_state(tmp_path / "b/lightning_logs/model2/version_0")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.mark.slow
def test_four_fits_started_together_get_four_run_folders(tmp_path, data_dir):
    runs = [_fit(tmp_path, data_dir, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2") for _ in range(4)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stdout.read()
    folders = sorted((tmp_path / "lightning_logs/model2").iterdir())
    assert [f.name for f in folders] == [f"version_{i}" for i in range(4)]
    for folder in folders:
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1, folder
        assert (folder / "config.yaml").is_file() and (folder / "checkpoints/last.ckpt").is_file()
        assert torch.load(folder / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 2
