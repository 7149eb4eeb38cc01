"""Calibration: does "85% sure" mean right 85% of the time? Expected calibration error and temperature scaling."""

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_calibration_error

BINS = 15


def expected_calibration_error(logits: Tensor, labels: Tensor, bins: int = BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins: the bins' |accuracy - confidence|, weighted by their share."""
    return float(multiclass_calibration_error(logits.softmax(1), labels, logits.shape[1], n_bins=bins, norm="l1"))


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The temperature T > 0 that minimises the cross-entropy of ``logits / T`` (Guo et al., 2017): one number,
    fitted on held-out images (here the validation split), that changes confidence and never the predicted class.
    Runs with gradients even inside Lightning's test loop (inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        logits, labels = logits.detach().clone().double(), labels.detach().clone()
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        return float(log_t.detach().exp())


def reliability(logits: Tensor, labels: Tensor, bins: int = BINS) -> list[tuple[float, float, int]]:
    """Per confidence bin: (mean confidence, accuracy, count), for the reliability diagram."""
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    which = (confidence * bins).long().clamp(max=bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append(
            (
                float(confidence[inside].mean()) if n else (b + 0.5) / bins,
                float(correct[inside].mean()) if n else 0.0,
                n,
            )
        )
    return rows
