"""The report's training-curve figure: one curve per seed at whole epochs, and a run with nothing readable drawn
as empty axes rather than a matplotlib warning."""

import pytest

from cifar_lightning.runs.figures import curves_figure


def _scalars(offset: float) -> dict[str, list[tuple[int, float]]]:
    """Two epochs of 10 steps each, as a run logs them: epoch values at each epoch's last step."""
    epoch_ends = [(9, 0.5 + offset), (19, 0.6 + offset)]
    return {
        "train/loss_epoch": epoch_ends,
        "train/acc_epoch": epoch_ends,
        "val/loss": epoch_ends,
        "val/acc": epoch_ends,
    }


def test_each_seed_gets_its_own_validation_curve_at_whole_epochs():
    fig = curves_figure("model1", [("seed 0", _scalars(0.0)), ("seed 1", _scalars(0.1))], steps_per_epoch=10)
    accuracy = fig.axes[1]
    curves = {line.get_label(): line for line in accuracy.lines}
    assert set(curves) >= {"seed 0: validation", "seed 1: validation"}
    assert list(curves["seed 1: validation"].get_xdata()) == [1, 2]
    assert list(curves["seed 1: validation"].get_ydata()) == pytest.approx([0.6, 0.7])
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == list(curves)


def test_a_run_with_nothing_readable_draws_empty_axes_without_a_warning(recwarn):
    fig = curves_figure("model1", [("", {})], steps_per_epoch=10)
    assert [len(ax.lines) for ax in fig.axes] == [0, 0]
    assert not [str(w.message) for w in recwarn], [str(w.message) for w in recwarn]
