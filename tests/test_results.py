"""``results/report.md`` is what ``report`` makes from the committed runs: nobody edits a result by hand."""

from pathlib import Path

import pytest

from cifar_lightning.runs import cli
from cifar_lightning.runs.folders import model_runs
from cifar_lightning.tools.report import stand_ins, write_report

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "results"


@pytest.mark.parametrize("folder", ["results", "results/ladder"])
def test_the_committed_report_regenerates_from_the_committed_runs(tmp_path, monkeypatch, folder):
    monkeypatch.chdir(ROOT)  # the runs' config.yaml name data/ relative to the repository root
    out = write_report(f"{folder}/runs", str(tmp_path), None, "configs")
    committed_folder = ROOT / folder
    fresh, committed = (out / "report.md").read_text(), (committed_folder / "report.md").read_text()
    if (ROOT / "data/cifar10.npz").is_file():
        assert fresh == committed
    else:  # without the images there is no normalization table; every result table must still match
        assert fresh.split("## Hyperparameters")[1] == committed.split("## Hyperparameters")[1]
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        p.name for p in (committed_folder / "figures").iterdir()
    )


def test_the_committed_runs_are_complete_and_tested():
    for model in sorted(p.name for p in (RESULTS / "runs").iterdir()):
        runs = model_runs(RESULTS / "runs", model, cli.experiment(ROOT / "configs" / f"{model}.yaml"))
        for run in runs:  # each has its config's settings, or differs in precision alone (bf16 against fp32)
            assert run.complete and (not run.deviations or run in stand_ins(runs)), f"{run.path}: {run.status}"
            assert run.test is not None and 0 < run.test["test/acc"] < 1, run.path
            assert not list(run.path.rglob("*.ckpt")), "checkpoints stay out of the repository"
