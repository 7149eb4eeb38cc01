"""``python benchmarks/cpu_step.py``: what else could make a long CPU run faster, and would it change its numbers?

model4's training step (batch 64, dropout 0.5, SGD lr 0.001 momentum 0.9, fp32, one thread as each long run
has) in fresh processes, interleaved: eager (the package's step), ``torch.compile`` and the channels-last layout.
Each option's time is a ratio to the eager runs either side of it; it is exact when its weights after the same
steps from the same seed are the eager ones to the bit (what a run resumed or rerun under it would need).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from bench import normalized, training_split

from cifar_lightning.training.malloc import keep_freed_memory
from cifar_lightning.training.network import ConvNet

OPTIONS = ("compile", "channels_last")


def step_process(data_dir: str, option: str, steps: int, warmup: int) -> dict[str, float | str]:
    """ms per step and a digest of the weights after the warm-up steps, in a fresh one-thread process."""
    command = [sys.executable, __file__, "--one", json.dumps([data_dir, option, steps, warmup])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cpu_step: {option} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _one(data_dir: str, option: str, steps: int, warmup: int) -> None:
    torch.set_num_threads(1)
    keep_freed_memory()  # as the command line does
    images, labels = training_split(data_dir)
    data, n = normalized(images), len(images)
    torch.manual_seed(0)
    net = ConvNet(dropout=0.5)
    layout = torch.channels_last if option == "channels_last" else torch.contiguous_format
    net = net.to(memory_format=layout)
    if option == "compile":
        net.compile()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    order, batch = torch.randperm(n), 64
    digest, start = "", 0.0
    for step in range(warmup + steps):
        if step == warmup:  # the compile happens in the warm-up steps
            digest = repr(sum(p.detach().double().sum().item() for p in net.parameters()))
            start = time.perf_counter()
        idx = order[step * batch % (n - batch) :][:batch]
        loss = F.cross_entropy(net(data[idx].contiguous(memory_format=layout)), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print(json.dumps({"ms": 1000 * (time.perf_counter() - start) / steps, "weights": digest}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data.data_dir", dest="data_dir", default="data", help="folder with cifar10.npz")
    parser.add_argument("--options", nargs="+", choices=OPTIONS, default=list(OPTIONS))
    parser.add_argument("--steps", type=int, default=100, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the timing (and the weights' digest)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    # eager, option 1, eager, option 2, eager, ...: each option against the eager runs either side of it
    eager = [step_process(args.data_dir, "eager", args.steps, args.warmup)]
    runs: dict[str, list[dict]] = {option: [] for option in args.options}
    ratios: dict[str, list[float]] = {option: [] for option in args.options}
    for _ in range(args.rounds):
        for option in args.options:
            runs[option].append(step_process(args.data_dir, option, args.steps, args.warmup))
            eager.append(step_process(args.data_dir, "eager", args.steps, args.warmup))
            ratios[option].append(runs[option][-1]["ms"] / ((eager[-2]["ms"] + eager[-1]["ms"]) / 2))
    print(f"# model4's step, batch 64, one thread, torch {torch.__version__}, {args.steps} steps per process")
    print("| step | ms/step (each process) | time against eager (median) | weights after the warm-up |")
    print("|---|---|---|---|")
    each = ", ".join(f"{r['ms']:.1f}" for r in eager)
    reproducible = len({r["weights"] for r in eager}) == 1
    print(f"| eager | {each} | 1 | {'the same in every run' if reproducible else 'differ between runs'} |")
    for option, measured in runs.items():
        exact = all(r["weights"] == eager[0]["weights"] for r in measured)
        each = ", ".join(f"{r['ms']:.1f}" for r in measured)
        print(f"| {option} | {each} | {statistics.median(ratios[option]):.2f} | {'exact' if exact else 'differ'} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        _one(*json.loads(sys.argv[2]))
    else:
        main()
