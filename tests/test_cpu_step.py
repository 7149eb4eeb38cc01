"""benchmarks/cpu_step.py: each option's step timed against eager, and told apart by its weights."""

import cpu_step
import numpy as np
import pytest
from helpers import make_arrays


@pytest.mark.slow
def test_each_option_is_timed_against_eager_and_its_weights_compared(tmp_path, capsys):
    np.savez(tmp_path / "cifar10.npz", **make_arrays(n_train=1200, n_test=10))
    cpu_step.main(["--data.data_dir", str(tmp_path), "--options", "channels_last", "--steps=2", "--warmup=2",
                   "--rounds=1"])  # fmt: skip
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in capsys.readouterr().out.splitlines()]
    eager = next(row for row in rows if row[0] == "eager")
    assert len(eager[1].split(", ")) == 2 and eager[3] == "the same in every run"  # eager is reproducible
    layout = next(row for row in rows if row[0] == "channels_last")
    assert float(layout[2]) > 0
    assert layout[3] == "differ"  # its convolutions round differently, and dropout masks follow memory order
