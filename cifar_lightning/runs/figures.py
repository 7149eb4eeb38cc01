"""Figures drawn with matplotlib's object API (no display needed): used by the report, by ``test``
(the confusion matrix saved next to the run) and by TensorBoard's image tab."""

import numpy as np
import torch
from matplotlib.figure import Figure

from cifar_lightning.training.data import CLASSES


def curves_figure(
    model: str, runs: list[tuple[str, dict[str, list[tuple[int, float]]]]], steps_per_epoch: int
) -> Figure:
    """Loss and accuracy against epochs: training per logged step and per epoch, validation per epoch.

    ``runs`` holds (label, scalars) per run, e.g. one per seed; scalars map TensorBoard tags to (step, value)
    pairs, as a run logged them. Step ``s`` (from 0) ends at epoch ``(s + 1) / steps_per_epoch``, so epoch-end
    values sit at whole epochs. With several runs, each gets its own colour and per-step values are left out.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    several = len(runs) > 1
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy"), strict=True):
        for i, (name, scalars) in enumerate(runs):
            train_colour, val_colour = (f"C{i}", f"C{i}") if several else ("tab:blue", "tab:orange")
            prefix = f"{name}: " if name else ""
            ends = {s: i + 1 for i, (s, _) in enumerate(scalars.get("train/loss_epoch", []))}  # step -> epoch
            step_values = scalars.get(f"train/{metric}", [])
            if step_values and not several:
                steps, values = zip(*step_values, strict=True)
                x = (np.array(steps) + 1) / steps_per_epoch
                ax.plot(x, values, color=train_colour, alpha=0.35, lw=0.8, label="training (step)")
            for tag, style, kind, colour in (
                (f"train/{metric}_epoch", "--" if several else "-s", "training (epoch mean)", train_colour),
                (f"val/{metric}", "-" if several else "-o", "validation", val_colour),
            ):
                pairs = scalars.get(tag, [])
                if pairs:
                    epochs = [ends.get(s, (s + 1) / steps_per_epoch) for s, _ in pairs]
                    ax.plot(epochs, [v for _, v in pairs], style, color=colour, ms=3, label=prefix + kind)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{model}: {label}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run whose event files hold nothing readable draws no line
            ax.legend(fontsize=7 if several else None)
    return fig


def samples_figure(images: torch.Tensor, labels: torch.Tensor, per_class: int = 8) -> Figure:
    """A grid of training images, one row per class, labelled."""
    fig = Figure(figsize=(per_class * 0.9 + 1.4, len(CLASSES) * 0.9 + 0.4), layout="constrained")
    fig.suptitle(f"training images, {per_class} per class")
    axes = fig.subplots(len(CLASSES), per_class, squeeze=False)
    for c, name in enumerate(CLASSES):
        picks = torch.nonzero(labels == c).flatten()[:per_class].tolist()
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(picks):
                ax.imshow(images[picks[j]].permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[c][0].set_ylabel(name, rotation=0, ha="right", va="center")
    return fig


def confusion_figure(confusion: torch.Tensor, title: str) -> Figure:
    """Rows are true classes, columns predicted; each cell shows its count."""
    counts = confusion.cpu().numpy()
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(
            j, i, str(int(n)), ha="center", va="center", fontsize=7, color="white" if n > counts.max() / 2 else "black"
        )
    return fig


def reliability_figure(bins: list[tuple[float, float, int]], title: str) -> Figure:
    """Accuracy against confidence per bin (a calibrated model lies on the diagonal), with each bin's count."""
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.subplots()
    confidence, accuracy, counts = zip(*bins, strict=True)
    width = 1 / len(bins)
    centres = [(i + 0.5) * width for i in range(len(bins))]
    ax.bar(centres, accuracy, width=width * 0.9, color="tab:blue", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    ax.plot(confidence, accuracy, "o", color="tab:orange", ms=4, label="mean confidence")
    for x, n in zip(centres, counts, strict=True):
        if n:
            ax.text(x, 0.02, str(n), rotation=90, ha="center", va="bottom", fontsize=7, color="white")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (largest probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return fig
