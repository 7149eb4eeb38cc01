"""The benchmark on generated data: every row is measured (the command line in real subprocesses), and the
plain-loop variants it compares train the same network."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_arrays

from cifar_lightning import bench

ROOT = Path(__file__).parents[1]


@pytest.fixture
def bench_data(tmp_path: Path) -> Path:
    """3,000 training images: 2,000 after the benchmark's 1,000 for validation, 62 batches of 32."""
    np.savez(tmp_path / "cifar10.npz", **make_arrays(n_train=3000, n_test=1000))
    return tmp_path


def test_every_plain_loop_variant_trains_the_network():
    images = torch.from_numpy(make_arrays(n_train=256)["x_train"]).permute(0, 3, 1, 2).contiguous()
    labels = torch.randint(0, 10, (256,))
    threads = torch.get_num_threads()
    for variant in bench.PLAIN_VARIANTS.values():  # the malloc setting is the script's (plain_loop_process)
        options = {k: v for k, v in variant.items() if k != "keep_freed_memory"}
        assert bench.plain_loop(images, labels, 32, steps=2, warmup=1, **options) > 0
    assert torch.get_num_threads() == threads  # the 1-thread variant puts the thread count back
    assert bench.independent_loop(images, labels, 32, steps=9, warmup=1) > 0  # runs past an epoch of 8 batches


def test_the_plain_loop_runs_in_a_fresh_process(bench_data):
    assert bench.plain_loop_process(str(bench_data), 32, steps=2, warmup=1, keep_freed_memory=True) > 0


def test_a_failing_command_line_run_stops_the_benchmark_with_its_output(bench_data, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match="--data.batch_size=0"):
        bench.cli_step_ms(str(bench_data), 0, 2, 4)


@pytest.mark.slow
def test_the_benchmark_measures_every_row(bench_data, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the command-line rows run configs/model1.yaml
    threads = torch.get_num_threads()
    argv = ["--data_dir", str(bench_data), "--steps=3", "--warmup=1", "--cli_repeats=1", "--cli_span=6"]
    bench.main([*argv, "--batch_sizes", "32", "--variants", "--workers=0"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert torch.get_num_threads() == threads
    labels = [row.split(" | ")[0] for row in rows[1:]]
    assert any("independently written loop" in label for label in labels)
    assert any("bare Trainer, batch 32 (" in label for label in labels)
    assert any("command line, all defaults, batch 32, within the long run (ms/step" in label for label in labels)
    assert sum("bf16-mixed" in label for label in labels) == 2
    assert sum("plain loop script, batch 32, " in label for label in labels) == len(bench.PLAIN_VARIANTS)
    command_line = next(row for row in rows if "long minus short run (ms/step, steps 50-56" in row)
    cells = command_line.split(" | ")[1:4]
    cli_ms, plain_ms, ratio = (float(re.sub("[^0-9.]", "", cell.split(" (")[0])) for cell in cells)
    assert cli_ms > 0 and plain_ms > 0 and ratio == pytest.approx(plain_ms / cli_ms, rel=1e-2)
