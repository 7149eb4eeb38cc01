"""The benchmark on generated data: every row is measured (the command line in real subprocesses), and the
plain-loop variants it compares train the same network."""

import re
from pathlib import Path

import bench
import numpy as np
import pytest
import torch
from helpers import make_arrays

ROOT = Path(__file__).parents[1]


@pytest.fixture
def bench_data(tmp_path: Path) -> Path:
    """3,000 training images: 2,000 after the benchmark's 1,000 for validation, 62 batches of 32."""
    np.savez(tmp_path / "cifar10.npz", **make_arrays(n_train=3000, n_test=1000))
    return tmp_path


def test_every_plain_loop_variant_trains_the_network(monkeypatch):
    """Each variant moves the network's weights, and every fp32 variant to the same weights: they time the same
    training, only done differently."""
    from cifar_lightning.training.network import ConvNet

    made = []

    class Kept(ConvNet):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(bench, "ConvNet", Kept)
    images = torch.from_numpy(make_arrays(n_train=256)["x_train"]).permute(0, 3, 1, 2).contiguous()
    labels = torch.randint(0, 10, (256,))
    threads = torch.get_num_threads()
    torch.manual_seed(0)  # as plain_loop seeds it
    start = ConvNet().state_dict()
    trained = {}
    for name, variant in bench.PLAIN_VARIANTS.items():  # the malloc setting is the script's (plain_loop_process)
        options = {k: v for k, v in variant.items() if k != "keep_freed_memory"}
        assert bench.plain_loop(images, labels, 32, steps=2, warmup=1, **options) > 0
        trained[name] = made.pop().state_dict()
        assert not torch.equal(trained[name]["classifier.1.weight"], start["classifier.1.weight"]), name
    fp32 = [weights for name, weights in trained.items() if "bf16" not in name]
    for weights in fp32[1:]:
        for key, value in weights.items():
            torch.testing.assert_close(value, fp32[0][key], atol=1e-4, rtol=1e-3)
    assert torch.get_num_threads() == threads  # the 1-thread variant puts the thread count back
    assert bench.independent_loop(images, labels, 32, steps=9, warmup=1) > 0  # runs past an epoch of 8 batches


def test_the_plain_loop_runs_in_a_fresh_process(bench_data):
    assert bench.plain_loop_process(str(bench_data), 32, steps=2, warmup=1, keep_freed_memory=True) > 0


def test_a_failing_command_line_run_stops_the_benchmark_with_its_output(bench_data, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match="--data.batch_size=0"):
        bench.cli_step_ms(str(bench_data), 0, 2, 4)


def test_the_baseline_is_the_faster_way_to_normalize_on_this_machine(monkeypatch):
    times = {True: [30.0, 28.0], False: [27.0, 29.0]}  # normalize_once: ms per step of its two runs

    def fake(data_dir, batch_size, steps, warmup, keep_freed_memory, normalize_once=True):
        assert keep_freed_memory  # as the command line runs
        return times[normalize_once].pop(0)

    monkeypatch.setattr(bench, "plain_loop_process", fake)
    chosen, best = bench.fastest_baseline("data", 32, 10, 1)
    assert chosen == "uint8 batch gathered, normalized each step"
    assert best == {"float split normalized once": 28.0, "uint8 batch gathered, normalized each step": 27.0}


@pytest.mark.slow
@pytest.mark.parametrize("has_bf16", [True, False])
def test_the_benchmark_measures_every_row(bench_data, monkeypatch, capsys, has_bf16):
    monkeypatch.chdir(ROOT)  # the command-line rows run configs/model1.yaml
    monkeypatch.setattr(bench, "cpu_has_bf16", lambda: has_bf16)
    if has_bf16:  # which rows a bf16 CPU gets, from stand-in timings; every measurement runs in the other case
        for name, value in [("plain_loop", 900.0), ("independent_loop", 880.0), ("lightning_fit", 850.0),
                            ("floor_ms", 1.5), ("plain_loop_process", 40.0), ("evaluation", 5000.0)]:  # fmt: skip
            monkeypatch.setattr(bench, name, lambda *args, value=value, **kwargs: value)
        chosen = next(iter(bench.BASELINE_CANDIDATES))
        monkeypatch.setattr(bench, "fastest_baseline", lambda *args: (chosen, {chosen: 40.0}))
        monkeypatch.setattr(bench, "cli_step_ms", lambda *args: (41.0, 42.0))
        monkeypatch.setattr(bench, "data_paths", lambda *args: (0.5, 9.0))
    # the variants' rows from two of them, an fp32 and a bf16 one, each in its fresh process: every variant's loop
    # is trained in-process above, and a fresh process costs seconds of imports
    kept = ("float, 1 thread", "float, bf16 autocast")
    monkeypatch.setattr(bench, "PLAIN_VARIANTS", {label: bench.PLAIN_VARIANTS[label] for label in kept})
    threads = torch.get_num_threads()
    argv = ["--data.data_dir", str(bench_data), "--steps=3", "--warmup=1", "--cli_repeats=1", "--cli_span=6"]
    bench.main([*argv, "--batch_sizes", "32", "--variants", "--workers=0"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert torch.get_num_threads() == threads
    labels = [row.split(" | ")[0] for row in rows[1:]]
    assert any("independently written loop" in label for label in labels)
    assert any("bare Trainer, batch 32 (" in label for label in labels)
    assert any("batch 32: Lightning and data alone, no network" in label for label in labels)
    assert any("command line, all defaults, batch 32, within the long run (ms/step" in label for label in labels)
    assert sum("bf16-mixed" in label for label in labels) == (2 if has_bf16 else 0)
    assert any("no bf16 instructions" in row for row in rows) is not has_bf16
    bf16_variants = sum("bf16" in label for label in bench.PLAIN_VARIANTS)
    variants = len(bench.PLAIN_VARIANTS) - (0 if has_bf16 else bf16_variants)
    assert sum("plain loop script, batch 32, " in label for label in labels) == variants
    assert next(row for row in rows if "the baseline below" in row).split(" | ")[1] in bench.BASELINE_CANDIDATES
    command_line = next(row for row in rows if "long minus short run (ms/step, steps 50-56" in row)
    cells = command_line.split(" | ")[1:4]
    cli_ms, plain_ms, ratio = (float(re.sub("[^0-9.-]", "", cell.split(" (")[0])) for cell in cells)
    rounds = [float(r) for r in cells[2].split("rounds: ")[1].rstrip(" |)").split(", ")]
    assert plain_ms > 0 and ratio == pytest.approx(float(np.median(rounds)), abs=1e-3)
    # one round: its ratio is the plain loop's mean over the command line's ms, both printed to 0.1 ms and the
    # ratio to 0.001; six steps of a difference of two wall times can be any size, so the check allows for that
    # rounding only
    if abs(cli_ms) >= 0.1:  # a difference printed as 0.0 bounds nothing
        corners = [(plain_ms + dp) / (cli_ms + dc) for dp in (-0.05, 0.05) for dc in (-0.05, 0.05)]
        assert min(corners) - 0.0005 <= ratio <= max(corners) + 0.0005  # the difference may even be negative
