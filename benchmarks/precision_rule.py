"""How often the rules for admitting bf16 (results/README.md, "Precision of the long runs") pass, simulated:
three seeds a side on each of two models, each seed's best validation and test accuracy drawn from a normal
distribution with the seed-to-seed spread of the fp32 runs, bf16 shifted by ``--shifts`` points."""

import argparse

import numpy as np
from scipy import stats


def passes(fp32: np.ndarray, bf16: np.ndarray) -> tuple[bool, bool]:
    """(the earlier rule, the rule in use) on [model, seed, measure] arrays of accuracies in points."""
    differences = bf16.mean(axis=1) - fp32.mean(axis=1)  # [model, measure]
    earlier = bool(np.all(np.abs(differences) <= fp32.std(axis=1, ddof=1)))
    intervals = [
        stats.ttest_ind(bf16[m, :, k], fp32[m, :, k], equal_var=False).confidence_interval(0.95)
        for m in range(fp32.shape[0])
        for k in range(fp32.shape[2])
    ]
    in_use = all(low <= 0 <= high for low, high in intervals) and bool(np.all(np.abs(differences.mean(axis=0)) <= 1))
    return earlier, in_use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--std", type=float, default=0.8, help="seed-to-seed standard deviation, points")
    parser.add_argument("--correlation", type=float, default=0.7, help="of a seed's best val and test accuracy")
    parser.add_argument("--shifts", type=float, nargs="+", default=[0, -0.5, -1, -1.5, -2])
    parser.add_argument("--trials", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cov = args.std**2 * np.array([[1, args.correlation], [args.correlation, 1]])
    print("| bf16 shift (points) | earlier rule passes | rule in use passes |")
    print("|---|---|---|")
    for shift in args.shifts:
        results = np.array(
            [
                passes(rng.multivariate_normal([0, 0], cov, (2, 3)), rng.multivariate_normal([shift] * 2, cov, (2, 3)))
                for _ in range(args.trials)
            ]
        )
        print(f"| {shift:+.1f} | {results[:, 0].mean():.0%} | {results[:, 1].mean():.0%} |")


if __name__ == "__main__":
    main()
