"""Expected calibration error and temperature scaling."""

import math

import pytest
import torch

from cifar_lightning.training.calibration import expected_calibration_error, fit_temperature, reliability


def test_ece_equals_the_hand_computed_value():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.62, 0.38], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 0, 1])
    # bins of width 1/15: 0.9 twice (one right): |0.5 - 0.9| * 2/4; 0.62 right: |1 - 0.62| / 4; 0.7 right: |1 - 0.7| / 4
    expected = 0.4 * 2 / 4 + 0.38 / 4 + 0.3 / 4
    assert expected_calibration_error(probs.log(), labels) == pytest.approx(expected, abs=1e-6)
    assert [n for *_, n in reliability(probs.log(), labels) if n] == [1, 1, 2]


def test_temperature_scaling_mends_an_overconfident_model():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=generator) * 1.5
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    overconfident = 4 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(4, rel=0.15)
    before, after = (
        expected_calibration_error(overconfident, labels),
        expected_calibration_error(overconfident / temperature, labels),
    )
    assert after < before / 3 and math.isfinite(after)
    assert torch.equal((overconfident / temperature).argmax(1), overconfident.argmax(1))  # classes never change
