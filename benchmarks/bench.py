"""``python benchmarks/bench.py`` (``make bench``): throughput measured in one run on one machine, as ratios
to baselines.

- training images/s of ``fit`` through Lightning against a plain PyTorch loop written here
  (same net, data, batch size and SGD), at each batch size, the command line as users run it against
  that loop in its own process, and Lightning's own cost per step (a Trainer fitting one number on the
  same batches): the part of a step no change to this package's code can remove;
- one epoch of batches from this package's data path against torchvision's CIFAR10 + ToTensor +
  Normalize + DataLoader(SubsetRandomSampler, num_workers=2);
- evaluation images/s on the test split;
- on a GPU: CUDA graphs off against on (the default there), bf16 against fp32, compiled against
  eager, cudnn.benchmark on against off, where a step's time goes (wall clock against GPU kernel
  time from torch.profiler, and the host's Python functions from cProfile), full model4 epochs
  through Lightning with their 300-epoch projection, with CUDA graphs and without, and model4
  epochs through the command line as users run it (logger, checkpoints, progress bar).
Timings on a shared machine are noisy: compare ratios within one run, not numbers across runs.
"""

import argparse
import cProfile
import io
import json
import math
import pickle
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision import transforms
from torchvision.datasets import CIFAR10

from cifar_lightning.runs import cli
from cifar_lightning.training.classifier import CIFARClassifier, cpu_has_bf16
from cifar_lightning.training.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    VAL_SIZE,
    CIFAR10DataModule,
    EpochSampler,
    TensorLoader,
    load_npz,
    to_tensors,
)
from cifar_lightning.training.malloc import keep_freed_memory
from cifar_lightning.training.network import ConvNet


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def normalized(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW images as float, normalized with the CIFAR-10 mean and std."""
    mean = torch.tensor(CIFAR10_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def plain_loop(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    steps: int,
    warmup: int,
    normalize_once: bool = True,
    set_to_none: bool = True,
    threads: int | None = None,
    bf16: bool = False,
    channels_last: bool | None = None,
) -> float:
    """images/s of the fastest straightforward loop for this network: index a shuffled batch, forward,
    backward, SGD step (fp32, as fit). The switches are what was tried to make it faster (BENCHMARKS.md):
    normalizing the whole split once in float against normalizing each gathered uint8 batch,
    ``zero_grad(set_to_none)``, the thread count, bf16 autocast and the channels-last layout."""
    device = images.device
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    torch.manual_seed(0)
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    net = ConvNet().to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    data = normalized(images) if normalize_once else images
    order = torch.randperm(len(images), device=device)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=bf16)
    start = 0.0
    try:
        for step in range(warmup + steps):
            if step == warmup:
                _sync(device)
                start = time.perf_counter()
            idx = order[(step * batch_size) % (len(images) - batch_size) :][:batch_size]
            x = data[idx] if normalize_once else normalized(data[idx])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad(set_to_none=set_to_none)
            loss.backward()
            opt.step()
        _sync(device)
        return steps * batch_size / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)


def independent_loop(images: torch.Tensor, labels: torch.Tensor, batch_size: int, steps: int, warmup: int) -> float:
    """images/s of a second loop, written apart from :func:`plain_loop` the way the issue that asked for an
    honest baseline wrote its own (float images normalized once, a new ``randperm`` every epoch, a loss
    module, ``loss.item()`` every step), to check that the baseline is not a slow one."""
    torch.manual_seed(1)
    model = ConvNet().to(images.device).train()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    inputs = normalized(images)
    batches_per_epoch = len(inputs) // batch_size
    done, running_loss, start = 0, 0.0, 0.0
    while done < warmup + steps:
        permutation = torch.randperm(len(inputs), device=inputs.device)
        for i in range(min(batches_per_epoch, warmup + steps - done)):
            if done == warmup:
                _sync(images.device)
                start = time.perf_counter()
            batch = permutation[i * batch_size : (i + 1) * batch_size]
            optimizer.zero_grad()
            loss = criterion(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            done += 1
    return steps * batch_size / (time.perf_counter() - start)


def plain_loop_process(data_dir: str, batch_size: int, steps: int, warmup: int, **variant: Any) -> float:
    """Milliseconds per step of :func:`plain_loop` run in a fresh Python process, as a training script runs, so it
    compares with the command line's subprocesses; ``keep_freed_memory`` applies the command line's malloc setting."""
    arguments = json.dumps([data_dir, batch_size, steps, warmup, variant])
    command = [sys.executable, __file__, "--plain_script", arguments]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: the plain loop failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def _plain_script(data_dir: str, batch_size: int, steps: int, warmup: int, variant: dict[str, Any]) -> None:
    if variant.pop("keep_freed_memory", False):
        keep_freed_memory()
    images, labels = training_split(data_dir)
    print(1000 * batch_size / plain_loop(images, labels, batch_size, steps, warmup, **variant))


def training_split(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split of ``data_dir/cifar10.npz`` as fit has it (the validation images left out)."""
    npz = load_npz(Path(data_dir) / "cifar10.npz")
    n = len(npz["x_train"]) - VAL_SIZE
    return to_tensors(npz["x_train"][:n], npz["y_train"][:n])


# The two ways to get a normalized batch; which is faster depends on the CPU (BENCHMARKS.md), so the baseline is
# the faster of the two in each run. Both keep freed memory, as the command line does.
BASELINE_CANDIDATES = {
    "float split normalized once": {"keep_freed_memory": True},
    "uint8 batch gathered, normalized each step": {"keep_freed_memory": True, "normalize_once": False},
}
PLAIN_VARIANTS = {
    **BASELINE_CANDIDATES,
    "float, glibc's default malloc": {},
    "float, zero_grad(set_to_none=False)": {"keep_freed_memory": True, "set_to_none": False},
    "float, 1 thread": {"keep_freed_memory": True, "threads": 1},
    "float, channels-last": {"keep_freed_memory": True, "channels_last": True},
    "float, bf16 autocast": {"keep_freed_memory": True, "bf16": True},
    "float, bf16 autocast, channels-last": {"keep_freed_memory": True, "bf16": True, "channels_last": True},
}


def fastest_baseline(data_dir: str, batch_size: int, steps: int, warmup: int) -> tuple[str, dict[str, float]]:
    """The faster of :data:`BASELINE_CANDIDATES` here (best of two interleaved runs each, ms per step)."""
    timings: dict[str, list[float]] = {label: [] for label in BASELINE_CANDIDATES}
    for _ in range(2):
        for label, variant in BASELINE_CANDIDATES.items():
            timings[label].append(plain_loop_process(data_dir, batch_size, steps, warmup, **variant))
    best = {label: min(ms) for label, ms in timings.items()}
    return min(best, key=best.get), best


class _Timer(L.Callback):
    """Times training batches after a warm-up, the same span the plain loop times."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.batches = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step == trainer.max_steps:
            _sync(pl_module.device)
        self.end = time.perf_counter()
        self.batches = trainer.global_step - self.warmup


class _Profile(_Timer):
    """Also records the timed steps with torch.profiler, to split a step into GPU kernel time and the rest."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if trainer.global_step == self.warmup:
            activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.profiler.__exit__(None, None, None)


class _HostProfile(_Timer):
    """Records the timed steps with cProfile: which Python functions the host spends a step in."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if trainer.global_step == self.warmup:
            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.profiler.disable()


def _trainer(
    accelerator: str,
    callbacks: list[L.Callback],
    precision: str = "32-true",
    benchmark: bool = False,
    **kwargs,
) -> L.Trainer:
    """A bare Trainer with the CLI's defaults (full precision, cudnn.benchmark off) and nothing that writes files.
    ``benchmark`` is always set: Lightning leaves ``torch.backends.cudnn.benchmark`` as the last Trainer set it."""
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        benchmark=benchmark,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        **kwargs,
    )


def lightning_fit(
    data_dir: str,
    accelerator: str,
    batch_size: int,
    steps: int,
    warmup: int,
    precision: str = "32-true",
    benchmark: bool = False,
    timer: _Timer | None = None,
    **module: Any,
) -> float:
    """images/s of this package's fit: CIFARClassifier(**module) + CIFAR10DataModule through a bare Trainer."""
    torch.manual_seed(0)
    timer = timer or _Timer(warmup)
    trainer = _trainer(
        accelerator,
        [timer],
        precision,
        max_steps=warmup + steps,
        limit_val_batches=0,
        log_every_n_steps=100,
        benchmark=benchmark,
    )
    dm = CIFAR10DataModule(data_dir=data_dir, download=False, batch_size=batch_size)
    trainer.fit(CIFARClassifier(**module), datamodule=dm)
    return timer.batches * batch_size / (timer.end - timer.start)


class _Floor(L.LightningModule):
    """Lightning's own work per step, with nothing to compute: one scalar parameter and an SGD step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.w * 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def floor_ms(data_dir: str, accelerator: str, batch_size: int, steps: int, warmup: int) -> float:
    """Milliseconds per step of a Trainer fitting ``_Floor`` on this package's data: the least a step can cost."""
    timer = _Timer(warmup)
    trainer = _trainer(accelerator, [timer], max_steps=warmup + steps, limit_val_batches=0)
    trainer.fit(_Floor(), datamodule=CIFAR10DataModule(data_dir=data_dir, download=False, batch_size=batch_size))
    return 1000 * (timer.end - timer.start) / timer.batches


def gpu_kernel_time(data_dir: str, batch_size: int, steps: int, warmup: int) -> tuple[float, str]:
    """GPU kernel milliseconds per training step of fit, and the kernels that take most of it.

    Compared with the (unprofiled) wall time of a step: kernel time far below it means the host
    (Python, Lightning, kernel launches) sets the pace, not the GPU.
    """
    profile = _Profile(warmup)
    lightning_fit(data_dir, "gpu", batch_size, steps, warmup, timer=profile)
    events = profile.profiler.key_averages()
    kernel_us = sum(
        e.self_device_time_total
        for e in events
        if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation
    )
    return kernel_us / 1000 / profile.batches, events.table(sort_by="self_cuda_time_total", row_limit=12)


def host_time(data_dir: str, batch_size: int, steps: int, warmup: int, rows: int = 15) -> str:
    """The Python functions a training step's host time goes to (cProfile, by own time)."""
    profile = _HostProfile(warmup)
    lightning_fit(data_dir, "gpu", batch_size, steps, warmup, timer=profile)
    out = io.StringIO()
    pstats.Stats(profile.profiler, stream=out).sort_stats("tottime").print_stats(rows)
    return out.getvalue()


def model4_epochs(
    data_dir: str, accelerator: str, epochs: int = 2, cuda_graph: bool | None = None
) -> list[tuple[float, float]]:
    """(seconds, val/acc) per full model4 epoch (batch 64, dropout 0.5) through Lightning, with validation."""
    torch.manual_seed(0)
    seconds: list[tuple[float, float]] = []

    class EpochClock(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            _sync(pl_module.device)
            self.t = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            _sync(pl_module.device)
            seconds.append((time.perf_counter() - self.t, float(trainer.callback_metrics.get("val/acc", -1))))

    trainer = _trainer(accelerator, [EpochClock()], max_epochs=epochs)
    optimizer = partial(torch.optim.SGD, lr=1e-3, momentum=0.9)
    model = CIFARClassifier(dropout=0.5, optimizer=optimizer, cuda_graph=cuda_graph)
    dm = CIFAR10DataModule(data_dir=data_dir, download=False, batch_size=64)
    trainer.fit(model, datamodule=dm)
    return seconds


def cli_epochs(data_dir: str, epochs: int, *extra: str) -> list[float]:
    """Seconds per model4 epoch as users run it (``python -m cifar_lightning fit --config configs/model4.yaml
    [extra]``, with its logger, checkpoints and progress bar): the wall-clock gaps between the ``val/acc`` events."""
    with tempfile.TemporaryDirectory() as logs:
        args = [
            "fit",
            "--config",
            "configs/model4.yaml",
            f"--trainer.max_epochs={epochs}",
            f"--data.data_dir={data_dir}",
        ]
        if cli.main([*args, *extra, "--data.download=false", f"--trainer.logger.init_args.save_dir={logs}"]) != 0:
            raise SystemExit("bench: the model4 fit through the command line failed")
        events = EventAccumulator(str(Path(logs) / "model4" / "version_0"))
        events.Reload()
        ends = [e.wall_time for e in events.Scalars("val/acc")]
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


def cli_step_ms(data_dir: str, batch_size: int, short: int, long: int, *extra: str) -> tuple[float, float]:
    """Milliseconds per training step of ``python -m cifar_lightning fit --config configs/model1.yaml`` as users
    run it, every default on (progress bar, TensorBoard, checkpoints, ``last.ckpt`` every 500 steps, figures), two
    ways: the wall time of a ``long``-step run less that of a ``short``-step one, in subprocesses, so that start-up,
    loading and the closing checkpoint cancel out; and within the long run, from the wall times TensorBoard
    recorded for its first and last logged ``train/loss`` (every 100 steps by default)."""

    def run(steps: int) -> tuple[float, list[tuple[int, float]]]:
        with tempfile.TemporaryDirectory() as logs:
            command = [
                *(sys.executable, "-m", "cifar_lightning", "fit", "--config=configs/model1.yaml"),
                *(f"--data.batch_size={batch_size}", f"--trainer.max_steps={steps}", f"--data.data_dir={data_dir}"),
                *("--data.download=false", f"--trainer.logger.init_args.save_dir={logs}", *extra),
            ]
            with open(Path(logs) / "output", "w+") as output:  # the progress bar draws as it would on a terminal
                start = time.perf_counter()
                code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT).returncode
                elapsed = time.perf_counter() - start
                if code != 0:
                    output.seek(0)
                    raise SystemExit(f"bench: {' '.join(command)} failed:\n{output.read()[-2000:]}")
            events = EventAccumulator(str(Path(logs) / "model1" / "version_0"))
            events.Reload()
            logged = (
                [(e.step, e.wall_time) for e in events.Scalars("train/loss")]
                if "train/loss" in events.Tags()["scalars"]
                else []
            )
        return elapsed, logged

    short_s, _ = run(short)
    long_s, logged = run(long)
    (first, t0), (last, t1) = (logged[0], logged[-1]) if len(logged) > 1 else ((0, math.nan), (1, math.nan))
    return 1000 * (long_s - short_s) / (long - short), 1000 * (t1 - t0) / (last - first)


def _time_epoch(batches: Callable[[], object]) -> float:
    start = time.perf_counter()
    for x, _ in batches():
        x.sum()  # touch the batch so lazy work is done
    return time.perf_counter() - start


def data_paths(npz: dict[str, np.ndarray], batch_size: int, workers: int) -> tuple[float, float]:
    """Seconds for one epoch of the training split (49,000 images): this package's loader against torchvision's
    pipeline."""
    n = len(npz["x_train"]) - VAL_SIZE
    images, labels = to_tensors(npz["x_train"][:n], npz["y_train"][:n])
    ours = _time_epoch(lambda: TensorLoader(images, labels, batch_size, EpochSampler(n, shuffle=True)))
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / CIFAR10.base_folder
        folder.mkdir()
        flat = npz["x_train"].transpose(0, 3, 1, 2).reshape(len(npz["x_train"]), -1)
        for i, chunk in enumerate(np.array_split(np.arange(len(flat)), 5), start=1):
            batch = {"data": flat[chunk], "labels": npz["y_train"][chunk].tolist()}
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
        # our files are not the official ones, so skip torchvision's MD5 checks, nothing else
        unchecked = type(
            "Unchecked", (CIFAR10,), {"_check_integrity": lambda self: True, "_load_meta": lambda self: None}
        )
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
        dataset = unchecked(root, train=True, transform=transform)
        sampler = torch.utils.data.SubsetRandomSampler(range(n))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
        theirs = _time_epoch(lambda: loader)
    return ours, theirs


def evaluation(npz: dict[str, np.ndarray], device: torch.device) -> float:
    """Test-split images/s of the network in eval mode, batches of 1000."""
    images, labels = (t.to(device) for t in to_tensors(npz["x_test"], npz["y_test"]))
    loader = TensorLoader(images, labels, 1000, EpochSampler(len(images), False))
    net = ConvNet().to(device).eval()
    with torch.inference_mode():
        net(next(iter(loader))[0])
        _sync(device)
        start = time.perf_counter()
        for x, _ in loader:
            net(x).argmax(1)
        _sync(device)
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data.data_dir", dest="data_dir", default="data", help="folder with cifar10.npz")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=150, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers")
    parser.add_argument("--gpu_epochs", type=int, default=2, help="full model4 epochs to time on a GPU")
    parser.add_argument("--cli_repeats", type=int, default=5, help="interleaved command-line/plain-loop rounds")
    parser.add_argument("--cli_span", type=int, default=500, help="steps between the short and the long run")
    parser.add_argument("--variants", action="store_true", help="also time the plain loop's variants")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the command line does, so that the in-process rows compare like with like
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    accelerator = "gpu" if cuda else "cpu"
    npz = load_npz(Path(args.data_dir) / "cifar10.npz")
    name = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()} CPU"
    print(f"# {name}, {torch.get_num_threads()} threads, torch {torch.__version__}, lightning {L.__version__}")
    print("| measurement | this package | baseline | ratio |")
    print("|---|---|---|---|")
    n_train = len(npz["x_train"]) - VAL_SIZE  # the training split, as fit has it
    images, labels = (t.to(device) for t in to_tensors(npz["x_train"][:n_train], npz["y_train"][:n_train]))
    for bs in args.batch_sizes:
        plain = plain_loop(images, labels, bs, args.steps, args.warmup)
        other = independent_loop(images, labels, bs, args.steps, args.warmup)
        row = f"| plain loop, batch {bs} (train images/s; baseline: an independently written loop) | {plain:,.0f}"
        print(f"{row} | {other:,.0f} | {plain / other:.3f} |")
        ours = lightning_fit(args.data_dir, accelerator, bs, args.steps, args.warmup)
        row = f"| fit, bare Trainer, batch {bs} (train images/s; baseline: plain loop) | {ours:,.0f} | {plain:,.0f}"
        print(f"{row} | {ours / plain:.3f} |")
        # what no change to this package's step can remove: Lightning's loop and the batches, with nothing to compute
        floor = floor_ms(args.data_dir, accelerator, bs, 10 * args.steps, args.warmup)
        step_ms = 1000 * bs / ours
        row = f"| fit, bare Trainer, batch {bs}: Lightning and data alone, no network (ms/step; baseline: fit's step)"
        print(f"{row} | {floor:.2f} | {step_ms:.2f} | {floor / step_ms:.1%} of the step |")
        # start-up cancels in the difference; both runs end inside the first epoch (no validation)
        short = 50
        long = min(short + args.cli_span, n_train // bs - 1)
        chosen, candidates = fastest_baseline(args.data_dir, bs, args.steps, args.warmup)
        each = ", ".join(f"{label} {ms:.1f}" for label, ms in candidates.items())
        print(f"| plain loop script, batch {bs}: the baseline below (ms/step, best of 2: {each}) | {chosen} | | |")
        baseline = BASELINE_CANDIDATES[chosen]
        # plain, CLI, plain, CLI, ..., plain: each command-line run is compared with the plain runs either side of
        # it, so that a machine that slows down or speeds up over the minutes does not favour either
        plain_ms = [plain_loop_process(args.data_dir, bs, long - short, args.warmup, **baseline)]
        cli_ms, inrun_ms = [], []
        for _ in range(args.cli_repeats):
            difference, inrun = cli_step_ms(args.data_dir, bs, short, long)
            cli_ms.append(difference)
            inrun_ms.append(inrun)
            plain_ms.append(plain_loop_process(args.data_dir, bs, long - short, args.warmup, **baseline))
        around = [(a + b) / 2 for a, b in zip(plain_ms, plain_ms[1:], strict=False)]
        spans = {"long minus short run": f"steps {short}-{long}", "within the long run": "its logged steps"}
        for (label, span), per_step in zip(spans.items(), (cli_ms, inrun_ms), strict=True):
            ratios = [p / c for p, c in zip(around, per_step, strict=True)]
            row = f"| fit, command line, all defaults, batch {bs}, {label} (ms/step, {span}; baseline: "
            row += f"plain loop script, {long - short} steps, the runs either side) | {np.median(per_step):.1f} | "
            row += f"{np.median(plain_ms):.1f} | {np.median(ratios):.3f} (median of the rounds: "
            print(f"{row}{', '.join(f'{r:.3f}' for r in ratios)}) |")
        if cuda:
            continue
        bf16 = cpu_has_bf16() is not False  # emulated without bf16 instructions: 0.08-0.11x, minutes per row
        if not bf16:
            print(f"| fit, bare Trainer, batch {bs}, bf16 | not measured: this CPU has no bf16 instructions | | |")
        bf16_rows = {"bf16-mixed": {}, "bf16-mixed, channels-last": {"channels_last": True}} if bf16 else {}
        for label, switch in bf16_rows.items():
            fast = lightning_fit(args.data_dir, accelerator, bs, args.steps, args.warmup, "bf16-mixed", **switch)
            row = f"| fit, bare Trainer, batch {bs}, {label} (train images/s; baseline: 32-true)"
            print(f"{row} | {fast:,.0f} | {ours:,.0f} | {fast / ours:.2f} |")
        if args.variants:  # each in a fresh process, twice, interleaved
            variants = {k: v for k, v in PLAIN_VARIANTS.items() if bf16 or not v.get("bf16")}
            timings = {label: [] for label in variants}
            for _ in range(2):
                for label, variant in variants.items():
                    timings[label].append(plain_loop_process(args.data_dir, bs, args.steps, args.warmup, **variant))
            for label, ms in timings.items():
                each = ", ".join(f"{t:.1f}" for t in ms)
                print(f"| plain loop script, batch {bs}, {label} (ms/step) | {min(ms):.1f} (runs: {each}) | | |")
    ours_s, tv_s = data_paths(npz, 32, args.workers)
    print(f"| one epoch of batches, batch 32 (s; baseline: torchvision DataLoader) | {ours_s:.2f} | {tv_s:.2f} | "
          f"{tv_s / ours_s:.1f}x faster |")  # fmt: skip
    print(f"| evaluation, test split (images/s) | {evaluation(npz, device):,.0f} | | |")
    if cuda:
        base = lightning_fit(args.data_dir, accelerator, 64, args.steps, args.warmup)
        switches = {
            "CUDA graphs off vs on": {"cuda_graph": False},
            "bf16-mixed vs 32-true": {"precision": "bf16-mixed"},
            "compiled vs eager": {"compile": True},
            "cudnn.benchmark on vs off": {"benchmark": True},
        }
        for label, switch in switches.items():
            other = lightning_fit(args.data_dir, accelerator, 64, args.steps, args.warmup, **switch)
            print(f"| fit, batch 64, {label} (images/s) | {other:,.0f} | {base:,.0f} | {other / base:.2f} |")
        kernel_ms, table = gpu_kernel_time(args.data_dir, 64, args.steps, args.warmup)
        wall_ms = 1000 * 64 / base
        print(f"| fit, batch 64: one step (ms; baseline: GPU kernel time in it) | {wall_ms:.2f} | "
              f"{kernel_ms:.2f} | GPU busy {kernel_ms / wall_ms:.0%} |")  # fmt: skip
        floor = floor_ms(args.data_dir, accelerator, 64, args.steps, args.warmup)
        print(f"| fit, batch 64: one step (ms; baseline: Lightning and data alone, no network) | {wall_ms:.2f} | "
              f"{floor:.2f} | {floor / wall_ms:.0%} of the step |")  # fmt: skip
        for graphs, count in (("on", args.gpu_epochs), ("off", 3)):
            epochs = model4_epochs(args.data_dir, accelerator, count, cuda_graph=graphs == "on")
            for i, (sec, acc) in enumerate(epochs):
                row = f"| model4 epoch {i}, CUDA graphs {graphs} (s incl. validation; val/acc)"
                print(f"{row} | {sec:.2f} | val/acc {acc:.4f} | |")
            steady = sorted(sec for sec, _ in epochs[1:]) or [epochs[0][0]]
            minutes = 300 * steady[len(steady) // 2] / 60
            print(f"| model4, 300 epochs projected (median epoch), CUDA graphs {graphs} | {minutes:.1f} min | | |")
        for extra in ([], ["--trainer.enable_progress_bar=false"]):
            for i, sec in enumerate(cli_epochs(args.data_dir, 4, *extra), start=1):
                print(f"| model4 epoch {i} through the command line {' '.join(extra)} (s, end of validation "
                      f"to end of validation) | {sec:.2f} | | |")  # fmt: skip
        print(f"\nWhere a batch-64 step's GPU time goes ({args.steps} steps, torch.profiler):\n{table}")
        host = host_time(args.data_dir, 64, args.steps, args.warmup)
        print(f"\nWhere a batch-64 step's host time goes ({args.steps} steps, cProfile):\n{host}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plain_script"]:  # one measurement of plain_loop_process, in its own process
        _plain_script(*json.loads(sys.argv[2]))
    else:
        main()
