import math

import pytest
import torch
import torch.nn.functional as F
from helpers import CONFIG_DIR, FIT, scalars

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
