"""Ray Tune as the engine: a study's trials give the sequential study's numbers, a trial that dies resumes its run,
a restarted study skips finished trials, and a sweep writes a table and a config that trains."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import QUIET, data_args, scalars
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_lightning.__main__ import main as package_main
from cifar_lightning.tools.study import run_study

STUDY_CONFIGS = ["configs/model1.yaml", "configs/model2.yaml"]
pytestmark = pytest.mark.xdist_group("ray")  # one worker runs them all, with the module's one Ray


def quick(data_dir: Path) -> str:
    return " ".join([*data_args(data_dir), *QUIET, "--trainer.limit_train_batches=4", "--trainer.log_every_n_steps=2"])


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray on two CPUs for the module's tests; its workers can import tests/dying.py."""
    ray = pytest.importorskip("ray", reason="the tune extra: pip install -e '.[tune]'")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(Path(__file__).parent), prepend=":")
        patch.setenv("RAY_worker_niceness", "0")
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def val_acc_by_run(logs: Path) -> dict[tuple[str, int], list[tuple[int, float]]]:
    """{(model, seed): val/acc history} of every run folder under ``logs``."""
    histories = {}
    for config in logs.glob("*/version_*/config.yaml"):
        seed = yaml.safe_load(config.read_text())["seed_everything"]
        histories[(config.parent.parent.name, seed)] = scalars(config.parent)["val/acc"]
    return histories


@pytest.mark.slow
def test_a_study_of_trials_gives_the_sequential_numbers_and_skips_finished_trials(
    ray_cluster, run_cli, tmp_path, data_dir, monkeypatch
):
    logs = tmp_path / "lightning_logs"
    assert run_study(STUDY_CONFIGS, seeds=[0, 1], epochs=2, args=quick(data_dir), parallel=True) == 0
    trials = val_acc_by_run(logs)
    assert sorted(trials) == [("model1", 0), ("model1", 1), ("model2", 0), ("model2", 1)]
    assert len(list(logs.glob("*/version_*/test_results.json"))) == 4
    tested = {p: p.stat().st_mtime_ns for p in logs.glob("*/version_*/test_results.json")}

    assert run_study(STUDY_CONFIGS, seeds=[0, 1], epochs=2, args=quick(data_dir), parallel=True) == 0
    assert {p: p.stat().st_mtime_ns for p in logs.glob("*/version_*/test_results.json")} == tested
    assert len(list(logs.glob("*/version_*"))) == 4  # nothing new: every trial was already done

    shutil.move(logs, tmp_path / "trials")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each one-CPU trial ran
    try:
        assert run_study(STUDY_CONFIGS, seeds=[0, 1], epochs=2, args=quick(data_dir), parallel=False) == 0
    finally:
        torch.set_num_threads(threads)
    assert val_acc_by_run(logs) == trials


@pytest.mark.slow
def test_a_trial_that_dies_is_retried_from_its_last_checkpoint(ray_cluster, run_cli, tmp_path, data_dir):
    marker = tmp_path / "died"
    dying = {"class_path": "dying.DieOnce", "init_args": {"step": 6, "marker": str(marker)}}
    args = f"{quick(data_dir)} --trainer.callbacks+='{json.dumps(dying)}'"
    assert run_study(["configs/model1.yaml"], seeds=[0], epochs=3, args=args, parallel=True) == 0
    assert marker.exists()  # the first attempt died at step 6, mid-epoch 2, after last.ckpt of epoch 1
    run = tmp_path / "lightning_logs/model1/version_0"
    assert [p.name for p in run.parent.iterdir()] == ["version_0"]  # the retry continued the same run
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 12
    assert [s for s, _ in scalars(run)["val/acc"]] == [3, 7, 11]
    first, retry = sorted(run.glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3]))[:2]
    retry_events = EventAccumulator(str(retry))
    retry_events.Reload()
    assert [e.step for e in retry_events.Scalars("val/acc")] == [7, 11]  # it went on from step 4, not from 0
    assert (run / "test_results.json").is_file()


SPACE = """
model.optimizer.init_args.lr: {loguniform: [0.001, 0.1]}
model.dropout: {uniform: [0.0, 0.5]}
"""


@pytest.mark.slow
def test_a_sweep_writes_its_trials_best_first_and_a_config_that_trains(
    ray_cluster, run_cli, tmp_path, data_dir, capsys
):
    (tmp_path / "space.yaml").write_text(SPACE)
    argv = ["sweep", "--config=configs/model1.yaml", "--space=space.yaml", "--trials=4", "--epochs=3"]
    assert package_main([*argv, f"--args={quick(data_dir)}"]) == 0
    folder = tmp_path / "lightning_logs/model1-sweep"
    rows = [line.split(" | ") for line in (folder / "trials.md").read_text().splitlines()[2:]]
    assert len(rows) == 4
    table = [float(row[2]) for row in rows]
    runs = sorted((max(v for _, v in scalars(p)["val/acc"]) for p in folder.glob("version_*")), reverse=True)
    assert table == [float(f"{acc:.4g}") for acc in runs]  # one row per run folder, best first
    for trial in folder.glob("version_*"):  # stopped by ASHA or not, each ended on an epoch boundary
        logged = scalars(trial)
        epochs = len(logged["val/acc"])
        assert len(logged["train/loss_epoch"]) == epochs and list(trial.glob("checkpoints/epoch=*.ckpt")), trial
        assert torch.load(trial / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 4 * epochs, trial

    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert f"{best['model']['dropout']:.4g}" == rows[0][1]
    assert f"{best['model']['optimizer']['init_args']['lr']:.4g}" == rows[0][0].strip("| ")
    assert best["trainer"]["limit_train_batches"] == 4 and best["seed_everything"] == 0  # --args and --seed kept
    winner = next(  # the winning trial's run folder: its values are best.yaml's
        p for p in folder.glob("version_*")
        if yaml.safe_load((p / "config.yaml").read_text())["model"]["dropout"] == best["model"]["dropout"]
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one-CPU trial ran
    try:
        assert package_main(["fit", f"--config={folder / 'best.yaml'}"]) == 0  # nothing added: the file says it all
    finally:
        torch.set_num_threads(threads)
    again = scalars(tmp_path / "lightning_logs/model1-sweep-best/version_0")["val/acc"]
    trial = scalars(winner)["val/acc"]
    assert again[: len(trial)] == trial and len(again) == 3  # the trial again (ASHA may have stopped it early)

    capsys.readouterr()
    assert package_main([*argv, f"--args={quick(data_dir)}"]) == 1  # the same name again
    assert "already holds runs: pass a new --name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("model.dropout: 0.3\n", "model.dropout: expected one of uniform, loguniform, randint, choice"),
        ("model.dropout: {uniform: [0.5]}\n", "model.dropout: uniform [0.5]: needs two numbers, [low, high]"),
        ("model.dropout: {uniform: [0.5, 0.1]}\n", "model.dropout: uniform [0.5, 0.1]: low must be below high"),
        ("data.batch_size: {randint: [64, 64]}\n", "randint [64, 64]: low must be below high (randint draws low <="),
        ("model.optimizer.init_args.lr: {loguniform: [0, 0.1]}\n", "loguniform [0, 0.1]: low must be above 0"),
        ("data.batch_size: {choice: []}\n", "data.batch_size: choice []: needs at least one value"),
        ("- a list\n", "expected a mapping of config keys"),
    ],
)
def test_a_bad_search_space_is_one_error_naming_the_file_and_key(run_cli, tmp_path, capsys, space, message):
    pytest.importorskip("ray.tune", reason="the tune extra: pip install -e '.[tune]'")
    (tmp_path / "space.yaml").write_text(space)
    assert package_main(["sweep", "--config=configs/model1.yaml", "--space=space.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: search space space.yaml:") and message in err
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("space", "first", "last"),
    [
        (None, "error: search space space.yaml does not exist", "pass a YAML file such as configs/sweeps/model4.yaml"),
        (
            "model.dropout: {uniform: [0.0, 0.5]\n",
            "error: cannot read space.yaml (ParserError at line 2",
            "repair the search space",
        ),
    ],
    ids=["missing", "not-yaml"],
)
def test_a_search_space_that_cannot_be_read_is_one_error_about_the_space(run_cli, tmp_path, capsys, space, first, last):
    pytest.importorskip("ray.tune", reason="the tune extra: pip install -e '.[tune]'")
    if space is not None:
        (tmp_path / "space.yaml").write_text(space)
    assert package_main(["sweep", "--config=configs/model1.yaml", "--space=space.yaml"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(first) and err.endswith(last) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "lightning_logs").exists()


def test_a_mistyped_key_in_the_space_fails_before_any_trial(run_cli, tmp_path, capsys):
    pytest.importorskip("ray.tune", reason="the tune extra: pip install -e '.[tune]'")
    (tmp_path / "space.yaml").write_text("model.dropuot: {uniform: [0.0, 0.5]}\n")
    assert package_main(["sweep", "--config=configs/model1.yaml", "--space=space.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: search space space.yaml: configs/model1.yaml: unrecognized arguments: --model.dr")
    assert not (tmp_path / "lightning_logs").exists()


def test_an_out_that_cannot_be_written_fails_before_any_trial(run_cli, tmp_path, capsys):
    pytest.importorskip("ray.tune", reason="the tune extra: pip install -e '.[tune]'")
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "notes.md").write_text("mine")
    argv = ["sweep", "--config=configs/model1.yaml", "--space=space.yaml", "--out=notes.md/best.yaml"]
    assert package_main(argv) == 1
    err = capsys.readouterr().err
    assert err == "error: cannot write --out notes.md/best.yaml: notes.md is a file, not a folder\n"
    assert not (tmp_path / "lightning_logs").exists()


def test_without_the_extra_study_and_sweep_say_how_to_install_it(run_cli, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    (tmp_path / "space.yaml").write_text(SPACE)
    for argv in (["sweep", "--config=configs/model1.yaml", "--space=space.yaml"], ["study", "--parallel=true"]):
        assert package_main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install -e '.[tune]'" in err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_study_stopped_with_ctrl_c_or_sigterm_continues_with_the_same_command(tmp_path, data_dir, run_cli, sig):
    pytest.importorskip("ray.tune", reason="the tune extra: pip install -e '.[tune]'")
    study = [sys.executable, "-m", "cifar_lightning", "study", "--configs=configs/model1.yaml", "--seeds", "0",
             "--epochs=30", "--parallel=true",
             f"--args={quick(data_dir)} --trainer.callbacks+=dying.Slow --trainer.callbacks.seconds=0.1"]  # fmt: skip
    # 120 steps of at least 0.1 s: the signal, sent after the first epoch, lands long before the run could end
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "RAY_worker_niceness": "0", "PYTHONPATH": path}
    last = tmp_path / "lightning_logs/model1/version_0/checkpoints/last.ckpt"
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    process = subprocess.Popen(study, cwd=tmp_path, env=env, **output)
    deadline = time.monotonic() + 240
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(sig)  # to the study's own process, as kill or a container's stop sends it
    out, _ = process.communicate(timeout=240)
    assert process.returncode != 0, out
    assert "SIGTERM received" not in out  # Ray's own handler's stack dump
    assert "study: configs/model1.yaml seed 0: stopped before it finished" in out
    assert "run the same command again to continue" in out
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < stopped_at < 120

    again = subprocess.run(study, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "study: configs/model1.yaml seed 0: resume" in again.stdout + again.stderr
    assert [p.name for p in last.parents[2].iterdir()] == ["version_0"]
    assert torch.load(last, weights_only=True)["global_step"] == 120  # 30 epochs of 4 batches, in one run
