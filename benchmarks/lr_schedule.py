"""The warm-up + cosine schedule as the module builds it (LambdaLR over the closed form) against torch's chained
schedulers (SequentialLR of LinearLR and CosineAnnealingLR) over a model4-aug run's steps (60 epochs of 383
batches): how many of the learning rates agree to the bit, and the largest relative difference."""

import warnings
from types import SimpleNamespace

import torch
from jsonargparse import ArgumentParser

from cifar_lightning.training.classifier import CIFARClassifier


def main(steps: int = 383 * 60, warmup_fraction: float = 0.05, lr: float = 0.05) -> None:
    model = CIFARClassifier(lr_schedule="warmup_cosine", warmup_fraction=warmup_fraction)
    model.optimizer = lambda params: torch.optim.SGD(params, lr=lr)
    model._trainer = SimpleNamespace(estimated_stepping_batches=steps)  # all configure_optimizers reads of it
    ours = model.configure_optimizers()
    optimizer, scheduler = ours["optimizer"], ours["lr_scheduler"]["scheduler"]
    warmup = int(warmup_fraction * steps)
    chained_optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=lr)
    chained = torch.optim.lr_scheduler.SequentialLR(
        chained_optimizer,
        [
            torch.optim.lr_scheduler.LinearLR(chained_optimizer, 1 / warmup, 1.0, warmup - 1),
            torch.optim.lr_scheduler.CosineAnnealingLR(chained_optimizer, steps - warmup - 1),
        ],
        milestones=[warmup],
    )
    same, worst = 0, 0.0
    for _ in range(steps):
        a, b = optimizer.param_groups[0]["lr"], chained_optimizer.param_groups[0]["lr"]
        same += a == b
        worst = max(worst, abs(a - b) / max(a, b, 1e-30))
        optimizer.step()
        chained_optimizer.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SequentialLR's own deprecation warnings
            scheduler.step()
            chained.step()
    print(f"| {steps} | {same} | {worst:.2g} |")


if __name__ == "__main__":
    parser = ArgumentParser(description=__doc__)
    parser.add_function_arguments(main)
    main(**vars(parser.parse_args()))
