"""A study of configs x seeds: stopped and restarted with the same command, and the report's spread over seeds."""

import os
import re
import signal
import statistics
import subprocess
import sys

import pytest
import torch
from helpers import QUIET, data_args, scalars, table_row

from cifar_lightning.runs import cli
from cifar_lightning.tools.report import STUDY, verdict, write_report
from cifar_lightning.tools.study import run_study
from cifar_lightning.training.classifier import CIFARClassifier

STUDY_CONFIGS = ["configs/model1.yaml", "configs/model2.yaml"]


@pytest.fixture
def study(run_cli, tmp_path, data_dir, monkeypatch):
    """Run ``study`` over two configs x two seeds in tmp_path on the generated data; records each command."""
    commands = []
    lightning = cli.main

    def recording(args):
        if "--print_config" not in args:  # the study's own look at a config is not a command
            commands.append(args)
        return lightning(args)

    monkeypatch.setattr(cli, "main", recording)
    quick = " ".join([*data_args(data_dir), *QUIET, "--trainer.limit_train_batches=4", "--trainer.log_every_n_steps=2"])

    def run() -> int:
        commands.clear()
        return run_study(STUDY_CONFIGS, seeds=[0, 1], epochs=2, args=quick, parallel=False)

    run.commands = commands
    return run


def _sigterm_at_step(step: int, model: str, seed: int, monkeypatch) -> None:
    """Send this process SIGTERM once, after training step ``step`` of (model, seed), as a scheduler would."""
    sent = []

    def on_train_batch_end(self, outputs, batch, batch_idx):
        CIFARClassifier_on_train_batch_end(self, outputs, batch, batch_idx)
        here = (self.trainer.logger.name, self.trainer.datamodule.seed, self.global_step)
        if here == (model, seed, step) and not sent:
            sent.append(here)
            os.kill(os.getpid(), signal.SIGTERM)

    CIFARClassifier_on_train_batch_end = CIFARClassifier.on_train_batch_end
    monkeypatch.setattr(CIFARClassifier, "on_train_batch_end", on_train_batch_end)


def test_a_stopped_study_continues_with_the_same_command(study, tmp_path, monkeypatch, default_sigterm):
    _sigterm_at_step(3, "model2", 1, monkeypatch)
    assert study() == 130  # stopped in model2's seed-1 run, after three of its eight steps
    logs = tmp_path / "lightning_logs"
    interrupted = logs / "model2/version_1"
    assert torch.load(interrupted / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 3
    tested = sorted(str(p.relative_to(logs)) for p in logs.glob("*/version_*/test_results.json"))
    assert tested == ["model1/version_0/test_results.json", "model1/version_1/test_results.json",
                      "model2/version_0/test_results.json"]  # fmt: skip

    assert study() == 0
    # the finished runs were skipped; the interrupted one resumed in its own folder, then was tested
    assert [args[0] for args in study.commands] == ["fit", "test"]
    assert study.commands[0][-1] == "--ckpt_path=lightning_logs/model2/version_1/checkpoints/last.ckpt"
    assert sorted(p.name for p in (logs / "model2").iterdir()) == ["version_0", "version_1"]
    assert torch.load(interrupted / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 8
    assert [s for s, _ in scalars(interrupted)["val/acc"]] == [3, 7]
    assert (interrupted / "test_results.json").is_file()

    assert study() == 0 and study.commands == []  # nothing left to do

    out = write_report(str(logs), str(tmp_path / "reports"), None, str(tmp_path / "configs"))
    report = (out / "report.md").read_text()
    for model in ("model1", "model2"):
        accs = [max(v for _, v in scalars(logs / model / f"version_{i}")["val/acc"]) for i in (0, 1)]
        row = table_row(report, "Across seeds", model)
        assert row[1] == "2"
        assert row[2] == f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}%"
        assert row[3] == f"{100 * min(accs):.2f}–{100 * max(accs):.2f}%"
        # capped runs: their spread is shown, and not set against the study's value
        assert row[6] == "—" and row[7].startswith("not compared: other settings: ")
        assert f"trainer.max_epochs 2 ({model}.yaml: {STUDY[model].epochs})" in row[7]
    assert table_row(report, "Best validation accuracy", "model1")[1] == "version_0 (seed 0)"
    assert "| mean | red |" in report  # the data folder was read from the runs' config.yaml


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.70, 0.72, 0.74], "inside the seeds' range"),
        ([0.70, 0.71, 0.72], "above the range, 3.0 std from the mean"),
        ([0.75, 0.75], "below every seed"),
    ],
)
def test_verdict_places_the_study_against_the_seeds(values, expected):
    assert verdict(0.74, values) == expected


def test_the_study_command_takes_several_configs_and_seeds_as_words(monkeypatch):
    """``make study`` passes ``--configs a b --seeds 0 1``; jsonargparse alone wanted one JSON list."""
    import functools

    import cifar_lightning.tools.study
    from cifar_lightning.__main__ import main as package_main

    received = {}

    @functools.wraps(run_study)  # the same options and help as the real one
    def record(**kwargs):
        received.update(kwargs)
        return 0

    monkeypatch.setattr(cifar_lightning.tools.study, "run_study", record)
    argv = ["study", "--configs", *STUDY_CONFIGS, "--seeds", "0", "1", "--epochs", "2"]
    assert package_main(argv) == 0
    assert {k: received[k] for k in ("configs", "seeds", "epochs")} == {
        "configs": STUDY_CONFIGS,
        "seeds": [0, 1],
        "epochs": 2,
    }
    received.clear()
    assert package_main(["study", "--seeds", "3"]) == 0
    assert received["seeds"] == [3] and received["configs"] is None


def test_a_study_looks_for_its_runs_where_its_options_put_them(study, run_cli, tmp_path, data_dir, capsys):
    """``--args`` may move the run folders (another save_dir); finished runs are found there, not refit."""
    options = [*data_args(data_dir), *QUIET, "--trainer.limit_train_batches=2"]
    args = " ".join([*options, "--trainer.logger.init_args.save_dir=elsewhere"])
    for seeds in ([0], [0, 0]):  # a seed given twice is one run
        study.commands.clear()
        capsys.readouterr()
        configs = ["configs/model1.yaml", "./configs/model1.yaml"]  # the same file twice, too
        assert run_study(configs, seeds, epochs=1, args=args, parallel=False) == 0
    assert study.commands == []  # the second call found the finished, tested run
    assert capsys.readouterr().err.count("study: configs/model1.yaml seed 0: done") == 1
    assert [p.name for p in (tmp_path / "elsewhere/model1").iterdir()] == ["version_0"]
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["study", "--cpus_per_trial", "0"], "cpus_per_trial"),
        (["study", "--gpus_per_trial", "-1"], "gpus_per_trial"),
        (["study", "--epochs", "0"], "epochs"),
        (["study", "--seeds", "0", "-1"], "seeds"),
        (["export", "--config=configs/model1.yaml", "--seed", "4294967296"], "seed"),
        (["serve", "--model=m.onnx", "--port", "0"], "port"),
        (["serve", "--model=m.onnx", "--max_batch_size", "0"], "max_batch_size"),
        (["sweep", "--config=configs/model1.yaml", "--space=s.yaml", "--trials", "0"], "trials"),
    ],
)
def test_seeds_shares_and_counts_out_of_range_are_refused_before_anything_runs(argv, key, capsys):
    from cifar_lightning.__main__ import main as package_main

    with pytest.raises(SystemExit) as stop:
        package_main(argv)
    assert stop.value.code == 2
    assert f'Parser key "{key}"' in capsys.readouterr().err


@pytest.mark.slow
def test_two_studies_started_together_do_each_run_once(run_cli, tmp_path, data_dir):
    """As from two terminals, or a cluster's job array: every (config, seed) fitted and tested by one of them."""
    quick = " ".join([*data_args(data_dir), *QUIET, "--trainer.limit_train_batches=4"])
    study = [sys.executable, "-m", "cifar_lightning", "study", "--configs", *STUDY_CONFIGS, "--seeds", "0", "1",
             "--epochs=2", "--parallel=false", f"--args={quick}"]  # fmt: skip
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    processes = [subprocess.Popen(study, cwd=tmp_path, **output) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outs
    logs = tmp_path / "lightning_logs"
    assert sorted(str(p.relative_to(logs)) for p in logs.glob("*/version_*")) == [
        "model1/version_0", "model1/version_1", "model2/version_0", "model2/version_1"
    ]  # fmt: skip
    fits = [line for out in outs for line in out.splitlines() if re.match(r"study: \S+ seed \d: fit$", line)]
    assert len(fits) == 4 and len(set(fits)) == 4
    assert sum(out.count("result saved to") for out in outs) == 4  # each run tested once
    assert len(list(logs.glob("*/version_*/test_results.json"))) == 4
