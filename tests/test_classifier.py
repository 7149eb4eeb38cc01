import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import CONFIG_DIR, FIT, make_arrays, scalars

from cifar_lightning.training.classifier import CIFARClassifier


def test_label_smoothing_applies_to_training_only():
    model = CIFARClassifier(label_smoothing=0.2)
    logits, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    model.train()
    assert torch.allclose(model.loss(logits, y), F.cross_entropy(logits, y, label_smoothing=0.2))
    model.eval()
    assert torch.allclose(model.loss(logits, y), F.cross_entropy(logits, y))
    assert not torch.allclose(F.cross_entropy(logits, y), F.cross_entropy(logits, y, label_smoothing=0.2))


@pytest.mark.parametrize("final", [0.0, 0.1])
def test_warmup_cosine_reaches_the_peak_and_the_final_learning_rate(run_cli, tmp_path, final):
    # 2 epochs x 4 batches = 8 steps: 2 of warm-up (0.005, 0.01), then a cosine down to final * 0.01
    args = [*FIT, "--trainer.limit_train_batches=4", "--trainer.log_every_n_steps=1"]
    args += ["--trainer.callbacks+=LearningRateMonitor", "--trainer.callbacks.logging_interval=step"]
    args += ["--model.optimizer.init_args.lr=0.01", "--model.lr_schedule=warmup_cosine"]
    args += ["--model.warmup_fraction=0.25", f"--model.final_lr_fraction={final}"]
    assert run_cli(*args) == 0
    lrs = [v for _, v in scalars(tmp_path / "lightning_logs/model1/version_0")["lr-SGD"]]
    assert len(lrs) == 8
    assert lrs[:2] == pytest.approx([0.005, 0.01])
    assert max(lrs) == pytest.approx(0.01)
    assert lrs[-1] == pytest.approx(final * 0.01, abs=1e-9)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))  # decreasing after the peak
    assert not math.isclose(lrs[4], 0.01)


def test_a_constant_schedule_keeps_the_configured_learning_rate(run_cli, tmp_path):
    args = [*FIT, "--trainer.limit_train_batches=3", "--trainer.log_every_n_steps=1"]
    args += ["--trainer.callbacks+=LearningRateMonitor", "--trainer.callbacks.logging_interval=step"]
    assert run_cli(*args) == 0
    lrs = [v for _, v in scalars(tmp_path / "lightning_logs/model1/version_0")["lr-SGD"]]
    assert lrs == pytest.approx([1e-3] * 6)


@pytest.mark.parametrize(("precision", "stops"), [("32-true", True), ("16-mixed", False)])
def test_an_overflowing_fp16_step_is_left_to_the_grad_scaler(monkeypatch, precision, stops):
    from types import SimpleNamespace

    from cifar_lightning.training.classifier import NonFiniteLossError

    model = CIFARClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fake = SimpleNamespace(
        precision=precision, optimizers=[optimizer], log_every_n_steps=0, global_step=0, current_epoch=0
    )
    monkeypatch.setattr(CIFARClassifier, "trainer", property(lambda self: fake))
    monkeypatch.setattr(model, "_trainer", fake)
    x = torch.full((2, 3, 32, 32), math.inf)  # an overflowing forward pass: the loss is not finite
    model.training_step((x, torch.zeros(2, dtype=torch.long)), 0)
    if stops:
        with pytest.raises(NonFiniteLossError, match="not finite at step 0"):
            model.on_before_optimizer_step(optimizer)
    else:
        model.on_before_optimizer_step(optimizer)


def test_test_time_augmentation_averages_the_softmax_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = CIFARClassifier(tta=True).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = (model.net(x).softmax(1) + model.net(x.flip(-1)).softmax(1)) / 2
        torch.testing.assert_close(model.probabilities(x), expected)
        torch.testing.assert_close(model.predict_step((x, torch.zeros(4)), 0), expected)
        model.tta = False
        torch.testing.assert_close(model.probabilities(x), model.net(x).softmax(1))


def test_the_study_configs_leave_test_time_augmentation_off():
    from lightning.pytorch.cli import LightningCLI

    from cifar_lightning.training.data import CIFAR10DataModule

    for config in sorted(CONFIG_DIR.glob("*.yaml")):
        cli = LightningCLI(CIFARClassifier, CIFAR10DataModule, args=["--config", str(config)], run=False)
        assert cli.model.tta is False, config.name


def test_the_costly_parts_of_a_step_run_once_per_n_steps(run_cli, monkeypatch):
    """24 steps, logging every 8, last.ckpt every 10: the weights' finiteness check runs once per checkpoint,
    step metrics once per logging step and, where reading the device-side flag waits for a GPU, the flag is
    read on logging steps and before checkpoints only; none of them every step."""
    import lightning as L

    counts = {"weights": 0, "flag": 0, "saves": 0, "logged": 0}

    def count(owner, name, key, when=lambda *args: True):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            counts[key] += when(*args)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    count(CIFARClassifier, "_check_weights", "weights")
    count(CIFARClassifier, "_check_finite", "flag")
    count(L.Trainer, "save_checkpoint", "saves")
    count(CIFARClassifier, "log", "logged", lambda self, name, *args: name == "train/loss")
    monkeypatch.setattr(CIFARClassifier, "_flag_is_cheap_to_read", lambda self: False)  # as on a GPU
    args = [*FIT[:2], "--trainer.max_epochs=1", "--data.batch_size=16", "--trainer.limit_train_batches=24"]
    assert run_cli(*args, "--trainer.log_every_n_steps=8", "--resume_checkpoint.every_n_train_steps=10") == 0
    # saves: last.ckpt at steps 10 and 20 and at the epoch's end, the best checkpoint after validation
    assert counts == {"weights": 4, "flag": 3 + 4, "saves": 4, "logged": 3}


@pytest.mark.parametrize(
    ("flags", "has"),
    [
        ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile", True),
        ("flags\t\t: fpu sse avx2 amx_bf16", True),
        ("Features\t: fp asimd bf16 i8mm", True),
        ("flags\t\t: fpu sse avx2 avx512f avx512_vnni", False),
    ],
)
def test_bf16_instructions_are_read_from_the_cpu_flags(tmp_path, flags, has):
    from cifar_lightning.training.classifier import cpu_has_bf16

    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\n{flags}\n")
    assert cpu_has_bf16(tmp_path / "cpuinfo") is has
    assert cpu_has_bf16(tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("device", "precision", "has_bf16", "warns"),
    [
        ("cpu", "bf16-mixed", False, True),
        ("cpu", "bf16-true", False, True),
        ("cpu", "bf16-mixed", True, False),
        ("cpu", "bf16-mixed", None, False),  # flags unreadable: say nothing rather than guess
        ("cpu", "32-true", False, False),
        ("cuda", "bf16-mixed", False, False),
    ],
)
def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch, device, precision, has_bf16, warns):
    import warnings
    from types import SimpleNamespace

    from cifar_lightning.training import classifier

    monkeypatch.setattr(classifier, "cpu_has_bf16", lambda: has_bf16)
    fake = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)), precision=precision, state=SimpleNamespace(fn="x")
    )
    monkeypatch.setattr(CIFARClassifier, "trainer", property(lambda self: fake))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CIFARClassifier().configure_model()
    said = [str(w.message) for w in caught if "bf16 instructions" in str(w.message)]
    assert len(said) == warns
    if warns:
        assert precision in said[0] and "use 32-true" in said[0]


def test_the_temperature_is_fitted_on_the_validation_split_not_on_the_test_images(run_cli, tmp_path, data_dir):
    """Test images whose labels are all wrong call for a far higher temperature than the validation images: the
    run's record holds the validation one, as a fit of the same module's validation logits gives it."""
    import numpy as np

    from cifar_lightning.training import calibration
    from cifar_lightning.training.data import CIFAR10DataModule

    assert run_cli(*FIT, "--model.optimizer.init_args.lr=0.05") == 0
    ckpt = next((tmp_path / "lightning_logs/model1/version_0/checkpoints").glob("epoch=*"))
    mislabelled = tmp_path / "mislabelled"
    mislabelled.mkdir()
    arrays = make_arrays()  # the data the run was fitted on, every test label moved to the next class
    arrays["y_test"] = (arrays["y_test"] + 1) % 10
    np.savez(mislabelled / "cifar10.npz", **arrays)
    assert run_cli("test", "--config=configs/model1.yaml", f"--ckpt_path={ckpt}", f"--data.data_dir={mislabelled}") == 0
    record = json.loads((tmp_path / "lightning_logs/model1/version_0/test_results.json").read_text())

    model = CIFARClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    data = CIFAR10DataModule(data_dir=str(mislabelled), download=False, val_size=128)
    data.setup("test")
    temperatures = {}
    for split, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        with torch.no_grad():
            logits, labels = (torch.cat(t) for t in zip(*((model(x), y) for x, y in loader), strict=True))
        temperatures[split] = calibration.fit_temperature(logits, labels)
    assert temperatures["test"] > 2 * temperatures["val"]  # the two splits do call for different ones
    assert record["test/temperature"] == pytest.approx(temperatures["val"], rel=1e-3)
