import io
import json
import math

import numpy as np
import pytest
import torch
from helpers import CONFIG_DIR, FIT, data_args, scalars
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_lightning.runs.cli import PROGRESS_BAR_REFRESH, CifarCLI
from cifar_lightning.tools.report import STUDY  # the study's published table
from cifar_lightning.training.classifier import CIFARClassifier
from cifar_lightning.training.data import CLASSES, CIFAR10DataModule

CONFIGS = [CONFIG_DIR / f"{name}.yaml" for name in STUDY]


def test_every_study_config_is_present_and_parses_to_the_study_values(tmp_path):
    for config in CONFIGS:
        cli = CifarCLI(CIFARClassifier, CIFAR10DataModule, args=["--config", str(config)], run=False)
        study, c = STUDY[config.stem], cli.config
        assert c.seed_everything == 0
        assert c.trainer.max_epochs == study.epochs and c.data.batch_size == study.batch_size
        assert c.data.val_size == 1000
        assert c.model.optimizer.class_path == "torch.optim.SGD"
        assert c.model.optimizer.init_args.lr == study.lr and c.model.optimizer.init_args.momentum == study.momentum
        assert c.model.dropout == study.dropout
        assert c.trainer.logger.init_args.name == config.stem
        assert cli.model.net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
        # the study trained without augmentation, schedule or label smoothing
        assert c.data.flip_p == 0 and c.data.translate == 0
        assert c.model.lr_schedule == "constant" and c.model.label_smoothing == 0
        # the comments a reader sees first say what tables.yaml says
        said = f"# Study's best validation accuracy: {100 * study.best_val_acc:.1f}% (loss {study.val_loss}, epoch "
        said += f"{study.best_epoch})" + (f"; test accuracy {100 * study.test_acc:.2f}%." if study.test_acc else ".")
        assert config.read_text().splitlines()[1] == said, config.name


def test_the_augmented_config_keeps_the_network_and_turns_the_extras_on():
    cli = CifarCLI(
        CIFARClassifier, CIFAR10DataModule, args=["--config", str(CONFIG_DIR / "model4-aug.yaml")], run=False
    )
    c = cli.config
    assert c.data.flip_p == 0.5 and c.data.translate == 4
    assert c.model.lr_schedule == "warmup_cosine" and c.model.label_smoothing > 0
    assert c.trainer.logger.init_args.name == "model4-aug"
    assert sum(p.numel() for p in cli.model.net.parameters()) == 890_410


def test_fit_writes_checkpoints_and_events_then_test_uses_the_best(run_cli, tmp_path, capsys):
    assert run_cli(*FIT, "--trainer.log_every_n_steps=2") == 0
    run = tmp_path / "lightning_logs" / "model1" / "version_0"
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in names and any(n.startswith("epoch=") and "-val_acc=" in n for n in names)
    assert "best checkpoint:" in capsys.readouterr().out
    tags = scalars(run)
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "train/loss_epoch"} <= set(tags)
    assert len(tags["val/acc"]) == 2
    assert (run / "config.yaml").is_file() and "learning rate: 0.001" in (run / "hparams.yaml").read_text()

    assert run_cli("test", "--config=configs/model1.yaml", "--ckpt_path=best") == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    record = json.loads((run / "test_results.json").read_text())
    assert record["checkpoint"].endswith(".ckpt") and "epoch=" in record["checkpoint"]
    assert 0 <= record["test/acc"] <= 1 and math.isfinite(record["test/loss"])
    assert sum(map(sum, record["confusion"])) == 200  # every test image counted once
    trace = sum(record["confusion"][i][i] for i in range(10))
    assert record["test/acc"] == pytest.approx(trace / 200)  # the accuracy is the matrix's, image for image
    assert 0 <= record["test/ece"] <= 1 and 0 <= record["test/ece_temperature_scaled"] <= 1
    assert record["test/temperature"] > 0
    with Image.open(run / "reliability.png") as image:
        assert image.format == "PNG"
    with Image.open(run / "confusion_matrix.png") as image:
        assert image.format == "PNG" and image.width > 300
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"samples/training_images", "test/confusion_matrix", "test/reliability"} <= set(events.Tags()["images"])
    per_class = [scalars(run)[f"test/acc_{name}"][-1][1] for name in CLASSES]
    assert per_class == pytest.approx(record["per_class_acc"])
    assert not (tmp_path / "lightning_logs" / "model1" / "version_1").exists()  # logged into the tested run


def test_test_without_a_checkpoint_is_an_error_not_fresh_weights(run_cli, capsys):
    assert run_cli("test", "--config=configs/model4.yaml") == 1
    assert "no best checkpoint of model 'model4'" in capsys.readouterr().err


def test_a_file_that_is_not_a_checkpoint_is_refused(run_cli, tmp_path, capsys):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"definitely not a checkpoint")
    assert run_cli("test", "--config=configs/model1.yaml", f"--ckpt_path={bogus}") == 1
    assert "is not a readable checkpoint" in capsys.readouterr().err


def test_a_checkpoint_of_another_network_is_refused(run_cli, tmp_path, capsys):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(3)}, "pytorch-lightning_version": "2.6.0"}, other)
    assert run_cli("test", "--config=configs/model1.yaml", f"--ckpt_path={other}") == 1
    assert "does not fit this ConvNet" in capsys.readouterr().err


def test_a_truncated_checkpoint_is_refused(run_cli, tmp_path, capsys):
    assert run_cli(*FIT[:2], "--trainer.max_epochs=1", "--trainer.limit_train_batches=2") == 0
    last = tmp_path / "lightning_logs/model1/version_0/checkpoints/last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[:5000])
    assert run_cli("test", "--config=configs/model1.yaml", f"--ckpt_path={cut}") == 1
    assert "is not a readable checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--model.optimizer.init_args.lr=0", '"model.optimizer.init_args.lr": 0.0 must be greater than 0'),
        ("--model.optimizer.init_args.lr=-1", "must be greater than 0"),
        ("--model.optimizer.init_args.momentum=1", '"model.optimizer.init_args.momentum": 1.0 must be in [0, 1)'),
        ("--model.dropout=1", 'key "model.dropout"'),
        ("--model.dropout=-0.1", "v>=0 and v<1"),
        ("--data.batch_size=0", 'key "data.batch_size"'),
        ("--data.val_size=0", 'key "data.val_size"'),
        ("--data.val_size=50000", "v>=1 and v<=49999"),
        ("--model.optimizer.init_args.lr=.nan", "is not a finite number"),
        ("--model.optimizer.init_args.momentum=.inf", "is not a finite number"),
        ("--model.label_smoothing=inf", 'key "model.label_smoothing"'),
        ("--model.droput=0.5", "droput"),
        ("--seed_everything=-1", '"seed_everything": -1 must be in [0, 4294967295]'),
        ("--seed_everything=4294967296", "must be in [0, 4294967295]"),
        ("--config=configs/missing.yaml", "missing.yaml"),
    ],
)
def test_bad_config_values_fail_at_parse_time_and_write_nothing(run_cli, tmp_path, capsys, arg, message):
    assert run_cli("fit", "--config=configs/model1.yaml", arg) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def test_malformed_yaml_fails_cleanly(run_cli, tmp_path, capsys):
    (tmp_path / "configs" / "broken.yaml").write_text("model:\n  dropout: [0.5\n")
    assert run_cli("fit", "--config=configs/broken.yaml") == 2
    assert "configs/broken.yaml is not valid YAML at line 3" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def test_bad_data_fails_before_any_run_folder_exists(run_cli, tmp_path, data_dir, capsys):
    (data_dir / "cifar10.npz").write_bytes(b"PK\x03\x04 broken")
    assert run_cli(*FIT) == 1
    assert "is truncated or not a valid .npz" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def _where_arrays(n_train: int = 640, n_test: int = 200) -> dict[str, np.ndarray]:
    """Images told apart only by where a bright square is (ten places; the same grey noise and colours in every
    class), so only a network that uses the image's layout learns them."""
    rng = np.random.default_rng(0)
    places = [(row, col) for row in (3, 19) for col in (1, 7, 13, 19, 25)]
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(60, 140, (n, 32, 32, 3))
        for image, label in zip(x, y, strict=True):
            row, col = places[label]
            image[row : row + 8, col : col + 6] = 230
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y.astype(np.int64)
    return arrays


def test_the_network_learns_where_things_are(run_cli, tmp_path, data_dir):
    np.savez(data_dir / "cifar10.npz", **_where_arrays())
    args = ["fit", "--config=configs/model1.yaml", "--trainer.max_epochs=8", "--model.optimizer.init_args.lr=0.005"]
    assert run_cli(*args) == 0
    accs = [v for _, v in scalars(tmp_path / "lightning_logs/model1/version_0")["val/acc"]]
    assert accs[-1] > 0.9  # chance is 0.1; on this data it reaches 1.0 by epoch 5 and stays there


def test_fit_ckpt_path_last_resumes_the_same_run(run_cli, tmp_path, capsys):
    assert run_cli(*FIT[:2], "--trainer.max_epochs=1", "--trainer.limit_train_batches=4") == 0
    capsys.readouterr()
    assert run_cli(*FIT[:2], "--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--ckpt_path=last") == 0
    assert "fit: using lightning_logs/model1/version_0/checkpoints/last.ckpt" in capsys.readouterr().err
    runs = sorted(p.name for p in (tmp_path / "lightning_logs/model1").iterdir())
    assert runs == ["version_0"]
    assert [s for s, _ in scalars(tmp_path / "lightning_logs/model1/version_0")["val/acc"]] == [3, 7]


def test_predict_classifies_image_files_and_reports_unreadable_ones(run_cli, tmp_path, capsys):
    from PIL import Image

    assert run_cli(*FIT[:2], "--trainer.max_epochs=1", "--trainer.limit_train_batches=2") == 0
    images = tmp_path / "mine"
    images.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(images / "red.png")
    Image.new("L", (32, 32), 128).save(images / "grey.jpg")
    Image.new("RGBA", (100, 100), (0, 0, 255, 128)).save(images / "blue.png")
    (images / "notes.txt").write_text("not an image")
    (tmp_path / "out").mkdir()  # a folder: predictions.csv in it
    code = run_cli(
        "predict",
        "--config=configs/model1.yaml",
        f"--data.predict_path={images}",
        f"--prediction_writer.output={tmp_path / 'out'}",
    )
    out_csv = tmp_path / "out" / "predictions.csv"
    assert code == 1  # one file failed
    captured = capsys.readouterr()
    assert "notes.txt" in captured.err
    rows = out_csv.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["file", "class", "probability"] and len(rows) == 4
    for row in rows[1:]:
        probs = [float(p) for p in row.split(",")[3:]]
        assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-4
    assert "red.png:" in captured.out


@pytest.mark.parametrize(
    ("args", "refresh"),
    [
        ([], PROGRESS_BAR_REFRESH),
        (["--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=3"], 3),
        (["--trainer.enable_progress_bar=false"], None),
    ],
    ids=["default", "own-bar", "no-bar"],
)
def test_the_progress_bar_redraws_every_few_batches_unless_the_config_says_otherwise(
    run_cli, data_dir, monkeypatch, args, refresh
):
    bars = []
    monkeypatch.setattr(CifarCLI, "before_fit", lambda self: bars.append(self.trainer.progress_bar_callback))
    quick = data_args(data_dir)
    assert run_cli(*FIT, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", *quick, *args, quick=False) == 0
    assert (bars[0].refresh_rate if bars[0] else None) == refresh


def test_the_progress_bar_counts_epochs_from_one(run_cli, data_dir, capsys):
    quick = data_args(data_dir)
    assert run_cli(*FIT, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", *quick, quick=False) == 0
    assert "Epoch 1/1" in capsys.readouterr().out  # Lightning's tqdm bars write to stdout


@pytest.mark.parametrize("logger", ["false", "lightning.pytorch.loggers.CSVLogger"])
def test_test_and_predict_use_the_trained_checkpoint_whatever_the_logger(run_cli, tmp_path, capsys, logger):
    assert run_cli(*FIT, "--trainer.max_epochs=1") == 0
    run = tmp_path / "lightning_logs/model1/version_0"
    best = next((run / "checkpoints").glob("epoch=*"))
    capsys.readouterr()
    assert run_cli("test", "--config=configs/model1.yaml", f"--trainer.logger={logger}") == 0
    assert f"test: using lightning_logs/model1/version_0/checkpoints/{best.name}" in capsys.readouterr().err
    record = json.loads((run / "test_results.json").read_text())
    assert record["checkpoint"].endswith(best.name)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    args = ["predict", "--config=configs/model1.yaml", f"--trainer.logger={logger}", "--data.predict_path=red.png"]
    assert run_cli(*args) == 0
    assert "predict: using" in capsys.readouterr().err


def test_without_any_trained_run_evaluation_is_an_error_with_any_logger(run_cli, tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "black.png")
    for command in ("test", "validate", "predict"):
        args = [command, "--config=configs/model1.yaml", "--trainer.logger=false", "--data.predict_path=black.png"]
        assert run_cli(*args) == 1
        assert "no best checkpoint of model 'model1' with seed 0" in capsys.readouterr().err
    assert not (tmp_path / "predictions.csv").exists()


def test_trainer_test_from_python_refuses_fresh_weights(data_dir):
    import lightning as L

    from cifar_lightning.errors import CifarError

    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    datamodule = CIFAR10DataModule(data_dir=str(data_dir), download=False, val_size=128)
    with pytest.raises(CifarError, match="test needs trained weights"):
        trainer.test(CIFARClassifier(), datamodule=datamodule)


def test_trainer_fit_and_test_from_python_write_what_the_cli_writes(data_dir, tmp_path):
    """The stage's artifacts come from callbacks, not from the CLI."""
    import lightning as L

    from cifar_lightning.runs.callbacks import TensorBoardFigures, TestResults
    from cifar_lightning.runs.checkpoints import BestCheckpoint, LastCheckpoint

    callbacks = [BestCheckpoint(monitor="val/acc", mode="max"), LastCheckpoint(), TestResults(), TensorBoardFigures()]
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, enable_progress_bar=False, callbacks=callbacks
    )
    datamodule = CIFAR10DataModule(data_dir=str(data_dir), download=False, val_size=128)
    trainer.fit(CIFARClassifier(), datamodule=datamodule)
    trainer.test(datamodule=datamodule, ckpt_path="best")
    run = tmp_path / "lightning_logs/version_0"
    assert (run / "checkpoints/last.ckpt").is_file()
    record = json.loads((run / "test_results.json").read_text())
    assert sum(map(sum, record["confusion"])) == 200 and (run / "confusion_matrix.png").is_file()


def test_config_plugins_are_kept_beside_the_atomic_checkpoint_writer(tmp_path):
    from cifar_lightning.runs.checkpoints import AtomicCheckpointIO

    args = ["--config", str(CONFIG_DIR / "model1.yaml"), "--trainer.plugins=DoublePrecision"]
    cli = CifarCLI(CIFARClassifier, CIFAR10DataModule, args=args, run=False)
    assert cli.trainer.precision == "64-true"
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_values_the_checkpoint_overrides_are_named(run_cli, tmp_path, capsys):
    assert run_cli(*FIT, "--trainer.max_epochs=1", "--data.mean=[0.5,0.5,0.5]") == 0
    capsys.readouterr()
    assert run_cli(*FIT, "--trainer.max_epochs=1", "--ckpt_path=last", "--model.dropout=0.1") == 1  # not resumed
    assert "model.dropout 0.0 (this command: 0.1)" in capsys.readouterr().err
    assert run_cli("test", "--config=configs/model1.yaml", "--model.dropout=0.1") == 0
    err = capsys.readouterr().err
    assert "model.dropout=0.1 ignored: the checkpoint was trained with 0.0" in err
    assert "data.mean" in err and "replaced by the checkpoint's (0.5, 0.5, 0.5)" in err


@pytest.mark.parametrize(
    ("device", "precision", "chosen"),
    [("cuda", "32-true", True), ("cuda", "bf16-mixed", True), ("cpu", "32-true", False), ("cpu", "bf16-mixed", True)],
)
def test_channels_last_is_chosen_for_the_device_the_model_will_run_on(monkeypatch, device, precision, chosen):
    from types import SimpleNamespace

    import torch

    model = CIFARClassifier()
    strategy = SimpleNamespace(root_device=torch.device(device))
    fake = SimpleNamespace(strategy=strategy, precision=precision, state=SimpleNamespace(fn="x"))
    monkeypatch.setattr(CIFARClassifier, "trainer", property(lambda self: fake))
    model.configure_model()  # still on the CPU, as when Lightning calls it
    assert model.channels_last is chosen


def test_predict_refuses_several_devices():
    from types import SimpleNamespace

    from cifar_lightning.errors import CifarError
    from cifar_lightning.runs.callbacks import PredictionWriter

    with pytest.raises(CifarError, match="predict runs on one device"):
        PredictionWriter().setup(SimpleNamespace(world_size=2), None, "predict")


def test_the_test_command_and_the_report_pick_the_same_run(run_cli, tmp_path, capsys):
    assert run_cli(*FIT) == 0  # complete
    assert run_cli(*FIT, "--trainer.max_steps=3") == 0  # newer, stopped in its first epoch; give it a "best" file
    (tmp_path / "lightning_logs/model1/version_1/checkpoints/epoch=009-val_acc=0.9999.ckpt").write_bytes(
        (tmp_path / "lightning_logs/model1/version_1/checkpoints/last.ckpt").read_bytes()
    )
    capsys.readouterr()
    assert run_cli("test", "--config=configs/model1.yaml") == 0
    err = capsys.readouterr().err
    assert "lightning_logs/model1/version_0/checkpoints/epoch=" in err
    assert "(seed 0: newest complete run; none has these settings, this one differs in trainer.limit_train" in err
    assert run_cli("test", *FIT[1:]) == 0  # the fit's own settings
    assert "version_0/checkpoints/epoch=" in (err := capsys.readouterr().err)
    assert "(seed 0: newest complete run of these settings)" in err


def test_a_parse_error_is_one_line_and_a_hint(run_cli, capsys):
    assert run_cli("fit", "--config=configs/model1.yaml", "--trainer.max_epochs=abc") == 2
    err = capsys.readouterr().err
    message = err[err.index("error: ") :].strip().splitlines()  # (pytest shows LightningCLI's args warning first)
    assert 'Parser key "trainer.max_epochs"' in message[0] and "Given value: abc" in err and "usage:" not in err
    assert len(message) < 12 and message[-1] == "(see: python -m cifar_lightning fit --help)"


def test_the_package_help_lists_every_command_and_an_unknown_one_is_an_error(capsys):
    from cifar_lightning.__main__ import main as package_main

    assert package_main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = ["fit", "validate", "test", "predict", "study", "sweep", "report", "stats", "export", "serve", "data"]
    for command in commands:
        assert f"\n  {command} " in out
    assert package_main(["fitt"]) == 2
    assert capsys.readouterr().err.strip() == f"error: unknown command 'fitt'; commands: {', '.join(commands)}"


def test_one_sample_per_class_is_drawn(run_cli, tmp_path):
    assert run_cli(*FIT, "--trainer.max_epochs=1", "--figures.samples_per_class=1") == 0
    events = EventAccumulator(str(tmp_path / "lightning_logs/model1/version_0"))
    events.Reload()
    (grid,) = events.Images("samples/training_images")
    with Image.open(io.BytesIO(grid.encoded_image_string)) as image:
        one_row = image.size
    assert run_cli(*FIT, "--trainer.max_epochs=1") == 0  # the default, 8 of each class
    events = EventAccumulator(str(tmp_path / "lightning_logs/model1/version_1"))
    events.Reload()
    (grid,) = events.Images("samples/training_images")
    with Image.open(io.BytesIO(grid.encoded_image_string)) as image:
        assert image.size != one_row  # one sample per class draws a smaller grid than eight


def test_hparams_compare_runs_by_their_results(run_cli, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    assert run_cli(*FIT) == 0
    assert run_cli("test", "--config=configs/model1.yaml") == 0
    run = tmp_path / "lightning_logs/model1/version_0"
    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert {k: v.number_value for k, v in start.hparams.items() if v.HasField("number_value")} == {
        "epochs": 2, "batch size": 32, "momentum": 0.9, "learning rate": 0.001, "dropout": 0.0, "seed": 0
    }  # fmt: skip
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == [
        "hparams/best_val_acc", "hparams/val_loss_at_best", "hparams/test_acc"
    ]  # fmt: skip
    logged = scalars(run)
    accs = logged["val/acc"]
    assert logged["hparams/best_val_acc"][-1][1] == max(v for _, v in accs)
    assert logged["hparams/test_acc"][-1][1] == pytest.approx(
        json.loads((run / "test_results.json").read_text())["test/acc"]
    )
    assert "hp_metric" not in logged


def test_a_resumed_run_logs_its_hyperparameters_once(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    assert run_cli(*FIT, "--trainer.max_steps=8") == 0  # stops in the second epoch
    assert run_cli(*FIT, "--ckpt_path=last") == 0
    run = tmp_path / "lightning_logs/model1/version_0"
    tags = [
        value.tag
        for file in sorted(run.glob("events.out.tfevents.*"))
        for event in EventFileLoader(str(file)).Load()
        for value in event.summary.value
    ]
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # the resume wrote a second file
    assert tags.count("_hparams_/session_start_info") == 1 and tags.count("samples/training_images") == 1


def test_running_from_another_folder_says_where_to_run_instead_of_downloading(tmp_path, monkeypatch, capsys):
    from cifar_lightning.runs.cli import main

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["fit", f"--config={CONFIG_DIR / 'model1.yaml'}"]) == 1
    err = capsys.readouterr().err
    assert f"data.data_dir data is relative to the working folder {elsewhere}" in err
    assert f"cd {CONFIG_DIR.parent}" in err
    assert list(elsewhere.iterdir()) == []  # no data/, no lightning_logs/


def test_test_time_augmentation_is_chosen_at_test_time(run_cli, tmp_path, capsys):
    assert run_cli(*FIT, "--trainer.max_epochs=1") == 0
    plain = tmp_path / "lightning_logs/model1/version_0/test_results.json"
    assert run_cli("test", "--config=configs/model1.yaml") == 0
    without = json.loads(plain.read_text())["test/loss"]
    assert run_cli("test", "--config=configs/model1.yaml", "--model.tta=true") == 0
    assert "model.tta=True ignored" not in capsys.readouterr().err  # not overridden by the checkpoint
    mirrored = json.loads(plain.with_name("test_results_tta.json").read_text())["test/loss"]
    assert mirrored != without and json.loads(plain.read_text())["test/loss"] == without  # both tests kept
