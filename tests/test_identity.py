"""A run's identity decides which runs are seeds of one experiment, which one ``best``, ``study`` and the report
use, and which one a fit may resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import QUIET, data_args, make_arrays

from cifar_lightning.runs import cli
from cifar_lightning.runs.identity import Experiment, identity
from cifar_lightning.tools.report import write_report
from cifar_lightning.tools.study import plan, run_study

SHORT = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=4"]


def _tiny_config(tmp_path: Path) -> str:
    """configs/tiny.yaml: model1's settings at a length a test can train in full (2 epochs of 4 batches)."""
    text = (tmp_path / "configs/model1.yaml").read_text()
    text = text.replace("max_epochs: 20", "max_epochs: 2\n  limit_train_batches: 4").replace(
        "name: model1", "name: tiny"
    )
    text = text.replace("val_size: 1000", "val_size: 128")  # as the generated data's quick runs have it
    (tmp_path / "configs/tiny.yaml").write_text(text)
    return "configs/tiny.yaml"


def test_identity_keeps_what_changes_learning_and_leaves_out_how_and_where():
    config = {
        "seed_everything": 3,
        "trainer": {"max_epochs": 5, "devices": 2, "limit_train_batches": 1.0, "precision": None, "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.TQDMProgressBar"},
            {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.999}},
        ]},
        "model": {"dropout": 0.5, "compile": True, "tta": True, "optimizer": {
            "class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "foreach": None}}},
        "data": {"batch_size": 64, "data_dir": "/somewhere", "eval_batch_size": 500, "flip_p": 0.5},
    }  # fmt: skip
    assert identity(config) == {
        "seed_everything": 3,
        "trainer.max_epochs": 5,
        "trainer.limit_train_batches": None,  # 1.0: every batch, as null
        "trainer.precision": "32-true",
        "trainer.callbacks": [config["trainer"]["callbacks"][1]],  # the progress bar is not part of it
        "model.dropout": 0.5,
        "model.optimizer.class_path": "torch.optim.SGD",
        "model.optimizer.init_args.lr": 0.01,
        "data.batch_size": 64,
        "data.flip_p": 0.5,
    }


def test_a_setting_an_older_run_lacks_counts_at_its_default():
    defaults = {"data.cutout": 0, "model.label_smoothing": 0.0}
    wanted = Experiment({"data.cutout": 0, "model.label_smoothing": 0.1, "model.dropout": 0.5}, defaults, "m.yaml")
    older = {"model": {"dropout": 0.5}}  # written before cutout and label smoothing existed
    assert wanted.differences(older) == ["model.label_smoothing 0.0 (m.yaml: 0.1)"]
    assert wanted.differences({"model": {"dropout": 0.5, "label_smoothing": 0.1}}) == []
    assert wanted.differences({"seed_everything": 1, "model": {"dropout": 0.5, "label_smoothing": 0.1}}) == []
    assert Experiment({"seed_everything": 0}, {}).differences({"seed_everything": 1}) == [
        "seed_everything 1 (config: 0)"
    ]


def test_the_committed_runs_have_their_configs_settings():
    """The study's runs made before identities were recorded are judged by their own config.yaml."""
    root = Path(__file__).parents[1]
    from cifar_lightning.runs.folders import model_runs

    for model in ("model1", "model2", "model5", "model7"):
        wanted = cli.experiment(root / "configs" / f"{model}.yaml")
        runs = model_runs(root / "results/runs", model, wanted)
        fp32 = [r for r in runs if r.precision == "32-true"]
        assert len(fp32) == 3 and all(r.deviations == [] for r in fp32), model
        bf16 = [f"trainer.precision bf16-mixed ({model}.yaml: 32-true)"]  # the precision comparison's runs
        assert all(r.deviations == bf16 for r in runs if r not in fp32), model
    capped = model_runs(root / "results/ladder/runs", "model4", cli.experiment(root / "configs/model4.yaml"))
    assert capped and all(r.deviations == ["trainer.max_epochs 5 (model4.yaml: 300)"] for r in capped)


def test_a_study_neither_counts_nor_resumes_a_run_of_other_settings(run_cli, tmp_path, data_dir):
    """A batch-capped run, or one with other hyperparameters, is not the study's run of that config and seed."""
    quick = [*data_args(data_dir), *QUIET, *SHORT]
    assert (
        run_cli("fit", "--config=configs/model1.yaml", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2") == 0
    )
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT, "--model.dropout=0.3") == 0
    assert plan(Path("configs/model1.yaml"), 0, quick)[0] == "fit"
    assert plan(Path("configs/model1.yaml"), 0, [*quick, "--model.dropout=0.3"])[0] == "test"

    args = " ".join([*quick[:-2], "--trainer.limit_train_batches=4"])
    assert run_study(["configs/model1.yaml"], seeds=[0], epochs=2, args=args, parallel=False) == 0
    runs = sorted((tmp_path / "lightning_logs/model1").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1", "version_2"]  # a new run of the asked settings
    settings = identity(yaml.safe_load((runs[2] / "config.yaml").read_text()))
    assert settings["model.dropout"] == 0.0 and settings["trainer.limit_train_batches"] == 4
    assert (runs[2] / "test_results.json").is_file() and not (runs[0] / "test_results.json").exists()


def test_a_fit_never_resumes_a_run_with_other_settings(run_cli, tmp_path, capsys):
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT) == 0
    last = tmp_path / "lightning_logs/model1/version_0/checkpoints/last.ckpt"
    before = (last.parent.parent / "config.yaml").read_text()
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT, "--model.dropout=0.3", f"--ckpt_path={last}") == 1
    err = capsys.readouterr().err
    assert "trained with other settings: model.dropout 0.0 (this command: 0.3)" in err and "start a new run" in err
    assert (last.parent.parent / "config.yaml").read_text() == before
    assert sorted(p.name for p in (tmp_path / "lightning_logs/model1").iterdir()) == ["version_0"]

    # the length may change under a constant learning rate (resume is exact), not under a schedule fitted to it
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT, "--trainer.max_epochs=3", f"--ckpt_path={last}") == 0
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT, "--model.lr_schedule=warmup_cosine") == 0
    cosine_last = tmp_path / "lightning_logs/model1/version_1/checkpoints/last.ckpt"
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT, "--model.lr_schedule=warmup_cosine",
                   "--trainer.max_epochs=3", f"--ckpt_path={cosine_last}") == 1  # fmt: skip
    assert "trainer.max_epochs 2 (this command: 3)" in capsys.readouterr().err

    # `last` is the newest run of these settings: the newest run with a last.ckpt has others, which is an error
    capsys.readouterr()
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT, "--model.dropout=0.3", "--ckpt_path=last") == 1
    err = capsys.readouterr().err
    assert "version_1, was trained with other settings: model.dropout 0.0 (this command: 0.3)" in err
    assert sorted(p.name for p in (tmp_path / "lightning_logs/model1").iterdir()) == ["version_0", "version_1"]


def test_a_newer_short_run_does_not_displace_a_full_length_one(run_cli, tmp_path, data_dir, capsys):
    tiny = _tiny_config(tmp_path)
    assert run_cli("fit", f"--config={tiny}") == 0  # the config's own length: the run that counts
    assert run_cli("fit", f"--config={tiny}", "--trainer.limit_train_batches=2") == 0  # newer, shorter
    full, short = (tmp_path / f"lightning_logs/tiny/version_{v}" for v in (0, 1))
    capsys.readouterr()
    assert run_cli("test", f"--config={tiny}") == 0
    err = capsys.readouterr().err
    assert f"using {full.relative_to(tmp_path)}/checkpoints/" in err and "newest complete run of these settings" in err
    assert (full / "test_results.json").is_file() and not (short / "test_results.json").exists()

    report = (write_report("lightning_logs", "reports", str(data_dir), "configs") / "report.md").read_text()
    assert (
        f"`{full.relative_to(tmp_path)}` (complete; epochs logged: 2); not used: version_1 (other settings: " in report
    )
    assert "trainer.limit_train_batches 2 (tiny.yaml: 4)" in report


def test_the_report_groups_seeds_only_within_one_experiment(run_cli, tmp_path, data_dir):
    tiny = _tiny_config(tmp_path)
    assert run_cli("fit", f"--config={tiny}", "--seed_everything=0") == 0
    assert run_cli("fit", f"--config={tiny}", "--seed_everything=1", "--model.optimizer.init_args.lr=0.01") == 0
    report = (write_report("lightning_logs", "reports", str(data_dir), "configs") / "report.md").read_text()
    assert "## Across seeds" not in report  # two seeds, but of two experiments
    assert "- tiny: `lightning_logs/tiny/version_0` (complete; epochs logged: 2); not used: version_1 (" in report
    assert "model.optimizer.init_args.lr 0.01 (tiny.yaml: 0.001)" in report


@pytest.mark.parametrize(
    "extra", [["--trainer.limit_test_batches=2", "--data.eval_batch_size=64"], ["--ckpt_path=last"]]
)
def test_a_partial_test_or_one_of_another_checkpoint_is_kept_beside_the_study_result(run_cli, tmp_path, capsys, extra):
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT) == 0
    assert run_cli("test", "--config=configs/model1.yaml") == 0
    run = tmp_path / "lightning_logs/model1/version_0"
    study = json.loads((run / "test_results.json").read_text())
    assert study["best"] and study["full"] and study["images"] == 200 and study["same_data_as_fit"]
    assert len(study["data_sha256"]) == 64 and study["precision"] == "32-true" and study["tta"] is False
    capsys.readouterr()

    assert run_cli("test", "--config=configs/model1.yaml", *extra) == 0
    assert json.loads((run / "test_results.json").read_text()) == study  # never replaced
    other = next(run.glob("test_results-*.json"))
    record = json.loads(other.read_text())
    partial = "--ckpt_path=last" not in extra
    assert other.name == ("test_results-128images.json" if partial else "test_results-last.json")
    assert (record["images"], record["full"], record["best"]) == ((128, False, True) if partial else (200, True, False))
    assert "not the run's study result" in capsys.readouterr().out


def test_a_full_test_records_its_accuracy_on_slices_the_size_of_the_validation_split(run_cli, tmp_path, data_dir):
    np.savez(data_dir / "cifar10.npz", **make_arrays(n_test=256))  # two slices of the 128 validation images' size
    assert run_cli("fit", "--config=configs/model1.yaml", *SHORT) == 0
    assert run_cli("test", "--config=configs/model1.yaml") == 0
    record = json.loads((tmp_path / "lightning_logs/model1/version_0/test_results.json").read_text())
    assert record["slice_size"] == 128 and len(record["slice_acc"]) == 2
    assert sum(record["slice_acc"]) / 2 == pytest.approx(record["test/acc"])
    assert all(round(128 * acc) == pytest.approx(128 * acc) for acc in record["slice_acc"])  # whole images
