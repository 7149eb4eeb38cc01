import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from helpers import QUIET, data_args, make_project, scalars, table_row
from PIL import Image

from cifar_lightning.__main__ import main as package_main
from cifar_lightning.runs.folders import Run
from cifar_lightning.tools.report import LADDER, STUDY, write_report

ONE_EPOCH = {"trainer": {"max_epochs": 1}}  # a run's config: with one logged epoch end, the run is complete


def seed_runs(folder: Path, model: str, accs: list[float], **kw) -> list[Run]:
    """One complete run of ``model`` per seed, with the given best validation accuracies, untested."""
    return [Run(model, folder / f"{model}-{i}", {"seed_everything": i, **ONE_EPOCH}, {
        "val/acc": [(9, acc)], "val/loss": [(9, 1.0)], "train/loss_epoch": [(9, 1.0)]}, None, **kw)
        for i, acc in enumerate(accs)]  # fmt: skip


def interrupted(model: str, folder: Path, val: float, test: float | None = None) -> Run:
    """A run of the config's own settings (300 epochs) stopped after two, tested or not."""
    scalars = {
        "val/acc": [(9, val), (19, val)],
        "val/loss": [(9, 1.0), (19, 1.0)],
        "train/loss_epoch": [(9, 1), (19, 1)],
    }
    record = {"test/acc": test, "images": 10_000} if test else None
    return Run(model, folder / f"{model}-interrupted", {"trainer": {"max_epochs": 300}}, scalars, record)


QUICK = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=5", "--trainer.log_every_n_steps=2"]


@pytest.fixture(scope="module")
def tiny_study_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model1 trained twice (then a third, interrupted run) and tested; model2 trained, not tested. Made once
    for the module; each test gets a copy (``tiny_study``)."""
    folder = make_project(tmp_path_factory.mktemp("tiny_study"))

    def run(*args: str) -> int:
        return package_main([*args, *data_args(folder / "data"), *QUIET])

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert run("fit", "--config=configs/model1.yaml", *QUICK) == 0
        assert run("fit", "--config=configs/model1.yaml", *QUICK, "--model.optimizer.init_args.lr=0.01") == 0
        assert run("test", "--config=configs/model1.yaml") == 0
        assert run("validate", "--config=configs/model1.yaml", "--ckpt_path=best") == 0  # logs val/* once more
        # stops after 7 steps, in its second epoch of three: an interrupted run
        assert (
            run("fit", "--config=configs/model1.yaml", *QUICK, "--trainer.max_epochs=3", "--trainer.max_steps=7") == 0
        )
        assert run("fit", "--config=configs/model2.yaml", *QUICK) == 0
    return folder


@pytest.fixture
def tiny_study(tiny_study_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the tiny study in this test's own folder, which is the working folder."""
    for name in ("lightning_logs", "configs"):
        shutil.copytree(tiny_study_once / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_report_tables_match_the_event_files(tiny_study, data_dir):
    logs = tiny_study / "lightning_logs"
    out = write_report(str(logs), str(tiny_study / "reports"), str(data_dir), str(tiny_study / "configs"))
    report = (out / "report.md").read_text()

    # model1: the newest complete run is version_1; version_2 was interrupted
    run = logs / "model1" / "version_1"
    accs = [v for _, v in scalars(run)["val/acc"]]
    losses = [v for _, v in scalars(run)["val/loss"]]
    best = accs.index(max(accs))
    row = table_row(report, "Best validation accuracy", "model1")
    assert row[1] == "version_1 (of 3)"
    assert row[2].startswith("other settings: ") and "trainer.max_epochs 2 (model1.yaml: 20)" in row[2]
    assert "model.optimizer.init_args.lr 0.01 (model1.yaml: 0.001)" in row[2]
    assert "trainer.limit_train_batches 5 (model1.yaml: null)" in row[2]
    assert row[3] == f"{100 * max(accs):.2f}%" and row[4] == "74.60%"
    assert row[5] == f"{100 * (max(accs) - STUDY['model1'].best_val_acc):+.2f} pp"
    assert row[6] == f"{losses[best]:.4f}" and row[7] == "0.9791"
    assert row[9] == str(best + 1) and row[10] == "16"
    assert "version_2 (interrupted after 1 of 3 epochs; other settings: " in report
    assert "version_0 (other settings: " in report  # the lr of the config, but capped: not grouped with version_1

    test = json.loads((run / "test_results.json").read_text())
    row = table_row(report, "Test accuracy", "model1")
    assert row[1] == "version_1 (of 3)"
    assert row[2].startswith("other settings: ") and "trainer.max_epochs 2 (model1.yaml: 20)" in row[2]
    assert row[3] == f"{100 * test['test/acc']:.2f}%" and row[4] == f"{test['test/loss']:.4f}"
    assert table_row(report, "Test accuracy", "model2")[3] == "not tested"
    assert "## Across seeds" not in report  # one seed per model: no spread to report

    assert table_row(report, "Hyperparameters", "model2") == [
        "model2",
        "2 (config: 50)",
        "32",
        "0.9",
        "0.001",
        "SGD",
        "0.5",
        "0",
        "32-true",
    ]
    assert table_row(report, "Hyperparameters", "model1")[4] == "0.01"  # the chosen run's own lr
    assert "| mean | red |" in report

    for name in ("model1.png", "model2.png", "samples.png"):
        with Image.open(out / "figures" / name) as image:
            image.verify()
            assert image.format == "PNG" and image.width >= 600 and image.height >= 300, name
    assert "![model1](figures/model1.png)" in report and "![samples](figures/samples.png)" in report


@pytest.mark.slow
def test_report_replaces_its_figures_whole_and_keeps_other_files(tiny_study, data_dir):
    out = tiny_study / "reports"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "stale.png").write_bytes(b"old")
    (out / "README.md").write_text("provenance")
    write_report(str(tiny_study / "lightning_logs"), str(out), str(data_dir), str(tiny_study / "configs"))
    assert not (out / "figures" / "stale.png").exists() and (out / "report.md").is_file()
    assert (out / "README.md").read_text() == "provenance"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "figures", "report.md"]  # no temporary left


def test_report_without_runs_says_so_and_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_logs").mkdir()
    monkeypatch.setattr(sys, "argv", ["cifar_lightning", "report"])
    assert package_main() == 1
    assert "no runs under lightning_logs/" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()

    Path("notes.md").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["cifar_lightning", "report", "--log_dir", "notes.md"])
    assert package_main() == 1
    err = capsys.readouterr().err
    assert err == "error: --log_dir notes.md is a file, not a folder: name the folder fit wrote its runs in\n"
    assert not (tmp_path / "reports").exists()


def test_make_study_runs_every_config_with_every_seed_then_the_report():
    root = Path(__file__).parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "MFLAGS"}  # as if run by hand
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "study", "EPOCHS=2", "SEEDS=0 1 2", f"PYTHON={sys.executable}"],
        cwd=root, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    configs = " ".join(f"configs/{model}.yaml" for model in STUDY)  # the study's, not the configs beyond it
    assert f"{sys.executable} -m cifar_lightning study --configs {configs} --seeds 0 1 2 --epochs 2 --args=''" in dry
    assert dry.rstrip().endswith(f"{sys.executable} -m cifar_lightning report")


def test_make_passes_extra_options_that_start_with_dashes():
    """``--args VALUE`` would take a VALUE starting with ``--`` for an option of its own: make writes ``--args=``."""
    root = Path(__file__).parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "MFLAGS"}
    args = ["EPOCHS=3", "ARGS=--trainer.enable_progress_bar=false", f"PYTHON={sys.executable}"]
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "ladder", *args], cwd=root, env=env, capture_output=True, text=True
    ).stdout
    ladder = " ".join(f"configs/{model}.yaml" for model in dict.fromkeys(rung.config for rung in LADDER))
    assert f"study --configs {ladder} --seeds 0 1 2 --epochs 3 --args='--trainer.enable_progress_bar=false'" in dry
    tta = " ".join(f"configs/{rung.config}.yaml" for rung in LADDER if rung.tta)
    assert f"for config in {tta}; do for seed in 0 1 2;" in dry
    tested = "--config $config --seed_everything $seed --model.tta true --trainer.max_epochs 3"
    assert f"{tested} --trainer.enable_progress_bar=false" in dry
    study = [sys.executable, "-m", "cifar_lightning", "study", "--configs=configs/model1.yaml", "--parallel=false"]
    help_run = subprocess.run([*study, "--args=--trainer.max_epochs=1", "--help"], cwd=root, capture_output=True)
    assert help_run.returncode == 0  # the study's parser takes the dashed value


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("model2/version_0/config.yaml", "model: [unclosed\n"),
        ("model2/version_0/config.yaml", "- a list, not a config\n"),
        ("model2/version_0/test_results.json", "[1, 2]"),
    ],
)
def test_a_damaged_run_file_is_named_and_its_run_left_out(tiny_study, data_dir, capsys, monkeypatch, file, text):
    (tiny_study / "lightning_logs" / file).write_text(text)
    monkeypatch.chdir(tiny_study)
    monkeypatch.setattr(sys, "argv", ["cifar_lightning", "report", f"--data.data_dir={data_dir}"])
    assert package_main() == 0
    err = capsys.readouterr().err
    assert f"warning: cannot read lightning_logs/{file}" in err and "the run is left out" in err
    used = (tiny_study / "reports/report.md").read_text().split("## Runs used")[1]
    assert "- model1: `lightning_logs/model1/version_1`" in used and "model2" not in used


@pytest.mark.slow
@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("notes.md", "error: --out notes.md is a file, not a folder"),
        ("notes.md/report", "error: cannot write --out notes.md/report: Not a directory; name a folder you can write"),
    ],
)
def test_report_out_naming_a_file_is_one_error(tiny_study, data_dir, capsys, monkeypatch, out, message):
    monkeypatch.chdir(tiny_study)
    Path("notes.md").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["cifar_lightning", "report", f"--data.data_dir={data_dir}", f"--out={out}"])
    assert package_main() == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.splitlines()) == 1
    assert Path("notes.md").read_text() == "mine"


def test_epochs_are_counted_from_the_run_when_validation_skips_epochs(run_cli, tmp_path, data_dir):
    args = ["fit", "--config=configs/model1.yaml", "--trainer.max_epochs=4", "--trainer.limit_train_batches=3"]
    assert run_cli(*args, "--trainer.check_val_every_n_epoch=2") == 0
    out = write_report(str(tmp_path / "lightning_logs"), str(tmp_path / "reports"), str(data_dir), "configs")
    row = table_row((out / "report.md").read_text(), "Best validation accuracy", "model1")
    accs = scalars(tmp_path / "lightning_logs/model1/version_0")["val/acc"]
    assert [s for s, _ in accs] == [5, 11]  # validated after epochs 2 and 4
    assert row[2].startswith("other settings: ")  # finished: not "interrupted after 2 of 4"
    assert "trainer.max_epochs 4 (model1.yaml: 20)" in row[2] and "check_val_every_n_epoch 2" in row[2]
    assert row[9] == str(2 * (1 + max(range(2), key=lambda i: (accs[i][1], -i))))


def test_the_readme_study_table_is_the_reports():
    """The README's study table is a copy of the committed report's (which test_results.py regenerates from the
    committed runs), so neither the study's numbers nor ours drift from their source."""
    root = Path(__file__).parents[1]
    readme, report = ((root / name).read_text() for name in ("README.md", "results/report.md"))
    section = report.split("## The study's table, reproduced")[1].split("\n## ")[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    start = readme.index(table[0])
    assert readme[start:].splitlines()[: len(table)] == table
    assert len(table) == 2 + len(STUDY)


def test_the_study_table_gives_each_model_its_runs_in_a_few_words(tmp_path):
    from cifar_lightning.tools.report import _study_table_section

    def run(model: str, seed: int, val: float, test: float | None) -> Run:
        record = {"test/acc": test, "images": 10_000} if test else None
        scalars = {"val/acc": [(9, val)], "val/loss": [(9, 1.0)], "train/loss_epoch": [(9, 1.0)]}
        return Run(model, tmp_path / f"{model}-{seed}", {"seed_everything": seed, **ONE_EPOCH}, scalars, record)

    chosen = {
        "model1": [run("model1", 0, 0.72, 0.70), run("model1", 1, 0.74, 0.71)],
        "model4": [run("model4", 0, 0.85, 0.8301)],
    }
    text = "\n".join(_study_table_section(chosen))
    assert table_row(text, "The study's table", "model1")[1:] == [
        "20", "32", "0.9", "1e-3", "none", "74.6% (0.9791, 16)",
        f"73.00 ± {100 * statistics.stdev([0.72, 0.74]):.2f}% (2 seeds, 72.00–74.00%); test 70.50 ± 0.71%",
    ]  # fmt: skip
    assert table_row(text, "The study's table", "model4")[-2:] == [
        "85.9% (0.4854, 245); test 83.01%",
        "85.00% (1 seed); test 83.01% (95% interval 82.26%–83.73%)",
    ]
    assert table_row(text, "The study's table", "model3")[-1] == "not run yet"  # no complete run to time
    capped = [Run("model6", tmp_path / "m6", {}, {"val/acc": [(9, 0.7)]}, None, deviations=["trainer.max_epochs 5"])]
    text = "\n".join(_study_table_section({"model6": capped}))
    assert (
        table_row(text, "The study's table", "model6")[-1]
        == "no run with the config's own settings (runs of others only)"
    )
    text = "\n".join(_study_table_section({"model4": [interrupted("model4", tmp_path, 0.82, test=0.81)]}))
    assert table_row(text, "The study's table", "model4")[-1] == "not finished (2 of 300 epochs)"  # no number


def test_not_run_estimates_charge_validation_per_epoch_not_per_training_image(tmp_path):
    from cifar_lightning.tools.report import estimate_hours

    def run(batch: int, steps: int, step_s: float, validation_s: float, name: str = "x") -> Run:
        scalars = {"train/loss_epoch": [(steps - 1, 1.0), (2 * steps - 1, 0.9)]}
        epoch_s = steps * step_s + validation_s
        return Run(name, tmp_path / name, {"data": {"batch_size": batch}}, scalars, None, epoch_s, step_s)

    capped = run(32, 100, 0.02, 10.0)  # 100 batches of 32, then validation: 2 s of training, 10 s of the rest
    hours, used = estimate_hours(STUDY["model2"], [run(128, 383, 0.07, 10.0), capped])
    assert used is capped
    assert hours == pytest.approx(50 * (49_000 * 0.02 / 32 + 10.0) / 3600)  # not 6x that, as per image it was

    # 64 lies as near to 32 as to 128 on a log scale: the larger batch, whatever the order of the runs
    small, large = run(32, 100, 0.02, 10.0, "a"), run(128, 100, 0.07, 10.0, "b")
    assert estimate_hours(STUDY["model4"], [small, large])[1] is large
    assert estimate_hours(STUDY["model4"], [large, small])[1] is large


def test_the_ablation_ladder_gives_each_rung_over_its_seeds(run_cli, tmp_path, data_dir):
    for config in ("model4", "model4-aug-ema-cutout"):
        for seed in (0, 1):
            args = [f"--config=configs/{config}.yaml", f"--seed_everything={seed}"]
            assert run_cli("fit", *args, *QUICK) == 0
            assert run_cli("test", *args) == 0
    tta = ["--config=configs/model4-aug-ema-cutout.yaml", "--model.tta=true"]
    assert all(run_cli("test", *tta, f"--seed_everything={seed}") == 0 for seed in (0, 1))
    logs = tmp_path / "lightning_logs"
    report = (write_report(str(logs), str(tmp_path / "out"), str(data_dir), "configs") / "report.md").read_text()

    section = report.split("## Ablation ladder")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    assert [row[1] for row in rows[1:]] == [
        "`model4`",
        "`model4-aug-ema-cutout`",
        "`model4-aug-ema-cutout` tested with `--model.tta true`",
    ]  # rungs without runs are left out
    for row, model, name in zip(rows[1:], ("model4", *["model4-aug-ema-cutout"] * 2), ("", "", "_tta"), strict=True):
        tests = [json.loads((logs / model / f"version_{v}" / f"test_results{name}.json").read_text()) for v in (0, 1)]
        accs = [100 * t["test/acc"] for t in tests]
        mean = sum(accs) / 2
        std = abs(accs[0] - accs[1]) / 2**0.5
        assert row[2:4] == ["2", "2"]
        assert row[4] == f"{mean:.2f} ± {std:.2f}% ({accs[0]:.2f}, {accs[1]:.2f})"
    plain, mirrored = (
        json.loads((logs / "model4-aug-ema-cutout/version_1" / name).read_text())
        for name in ("test_results.json", "test_results_tta.json")
    )
    assert plain["checkpoint"] == mirrored["checkpoint"] and plain["test/loss"] != mirrored["test/loss"]
    assert (logs / "model4-aug-ema-cutout/version_1/confusion_matrix_tta.png").is_file()


def test_the_studys_claims_are_tested_with_intervals_over_seeds(tmp_path):
    from scipy.stats import t

    from cifar_lightning.tools.report import _claims_section

    seeds = partial(seed_runs, tmp_path)

    model1, model2 = [0.70, 0.72, 0.71], [0.80, 0.78, 0.79, 0.81]
    chosen = {
        "model1": seeds("model1", model1),
        "model2": seeds("model2", model2),
        "model5": seeds("model5", [0.83, 0.84, 0.85]),  # above model2: the study's "under" is reversed
        "model3": seeds("model3", [0.86]),  # one seed against model2's four
        "model4": seeds("model4", [0.80]),  # one seed against model3's one
        "model7": seeds("model7", [0.7]),
        "model7b": seeds("model7b", [0.8, 0.9], deviations=["trainer.max_epochs 5 (model7b.yaml: 300)"]),
        "model6": [interrupted("model6", tmp_path, 0.99)],
    }
    lines = _claims_section(chosen)
    claims = ["dropout 0.5 over none", "dropout 0.2 under 0.5", "300 epochs over model7's 50"]
    claims += ["model4 is the best of the study's models", "dropout 0.8 underfits: model6 under model2"]
    claims += ["momentum 0.5 and 300 epochs over model2's 50", "batch 64 and momentum 0.9 over model3"]
    rows = {claim: table_row("\n".join(lines), "The study's claims", claim) for claim in claims}

    first = rows["dropout 0.5 over none"]
    v1, v2 = statistics.variance(model1) / 3, statistics.variance(model2) / 4
    df = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 3)
    mean = statistics.mean(model2) - statistics.mean(model1)
    half = t.ppf(0.975, df) * (v1 + v2) ** 0.5
    assert first[2:] == ["+7.60 pp", f"{100 * mean:+.2f} pp", "4 / 3", f"{100 * (mean - half):+.2f} to "
                         f"{100 * (mean + half):+.2f}", "holds"]  # fmt: skip
    assert rows["dropout 0.2 under 0.5"][-1] == "reversed"
    capped = "model7b no run with the config's own settings (runs of others only)"
    assert rows["300 epochs over model7's 50"][-1] == capped  # capped runs are not the study's
    assert rows["dropout 0.8 underfits: model6 under model2"][-1] == "model6 not finished (2 of 300 epochs)"
    lone = 0.86 - statistics.mean(model2)  # one seed: taken to spread like the other model's seeds
    half = t.ppf(0.975, 3) * statistics.stdev(model2) * (1 + 1 / 4) ** 0.5
    interval = f"{100 * (lone - half):+.2f} to {100 * (lone + half):+.2f}"
    assert rows["momentum 0.5 and 300 epochs over model2's 50"][3:] == [
        f"{100 * lone:+.2f} pp",
        "1 / 4",
        interval,
        "holds",
    ]
    one_each = ["-6.00 pp", "1 / 1", "—", "not decided: one seed on each side"]
    assert rows["batch 64 and momentum 0.9 over model3"][3:] == one_each
    best = (
        "not decided: model2, model5 within reach with these seeds; one seed each with model3, model7 "
        "(no result yet from model6, model7b)"
    )
    assert rows["model4 is the best of the study's models"][3:] == [
        "80.00%",
        "1",
        "— (one seed each with model3)",
        best,
    ]


@pytest.mark.parametrize(
    ("model4", "verdict"),
    [
        ([0.90], "holds"),
        ([0.70], "reversed: model2 higher"),
        ([0.80], "not decided: model2 within reach with these seeds"),
    ],
)
def test_model4_is_the_best_only_when_its_interval_against_every_other_model_is_above_zero(tmp_path, model4, verdict):
    from scipy.stats import t

    from cifar_lightning.tools.report import _best_model_row

    seeds = partial(seed_runs, tmp_path)

    model2 = [0.80, 0.81, 0.79]
    chosen = {
        "model1": seeds("model1", [0.60, 0.61]),
        "model2": seeds("model2", model2),
        "model4": seeds("model4", model4),
    }
    row = _best_model_row(chosen)
    difference = model4[0] - statistics.mean(model2)  # model2 is the nearest: the interval shown is against it
    half = t.ppf(0.975, 2) * statistics.stdev(model2) * (1 + 1 / 3) ** 0.5
    assert row[3:6] == [
        f"{100 * model4[0]:.2f}%",
        "1",
        f"{100 * (difference - half):+.2f} to {100 * (difference + half):+.2f} against model2",
    ]
    assert row[6] == f"{verdict} (no result yet from model3, model5, model6, model7, model7b)"


def test_a_model_with_one_seed_against_model4s_one_seed_is_named_apart_from_those_within_reach(tmp_path):
    from cifar_lightning.tools.report import _best_model_row

    seeds = partial(seed_runs, tmp_path)

    chosen = {
        m: seeds(m, accs) for m, accs in {"model2": [0.80, 0.81, 0.79], "model4": [0.90], "model6": [0.60]}.items()
    }
    assert _best_model_row(chosen)[6].startswith("not decided: one seed each with model6 (no result yet from")
    chosen["model5"] = seeds("model5", [0.89, 0.90, 0.91])
    verdict = _best_model_row(chosen)[6]
    assert verdict.startswith("not decided: model5 within reach with these seeds; one seed each with model6 (")


def test_the_validation_slices_of_each_tested_run_are_summarized(tmp_path):
    from cifar_lightning.tools.report import _slices_section

    slices = [0.80, 0.84, 0.82, 0.78]
    test = {"test/acc": 0.81, "slice_size": 1000, "slice_acc": slices}
    run = Run("model4", tmp_path / "version_0", {"seed_everything": 0}, {"val/acc": [(9, 0.85)]}, test)
    row = table_row("\n".join(_slices_section({"model4": [run]})), "How much the validation images decide", "model4")
    assert row[2:] == [
        "81.00%",
        "4 × 1,000",
        f"81.00 ± {100 * statistics.stdev(slices):.2f}%",
        "78.00–84.00%",
        "85.00%",
    ]
    assert _slices_section({"model4": [Run("model4", tmp_path, {}, {}, {"test/acc": 0.8})]}) == []  # older record


def test_the_studys_test_accuracy_is_set_against_each_runs_binomial_interval(tmp_path):
    from cifar_lightning.tools.report import _study_test_section

    def run(seed: int, acc: float, **kw) -> Run:
        test = {"test/acc": acc, "images": 10_000}
        epochs = {"train/loss_epoch": [(9, 1.0)]}
        return Run("model4", tmp_path / f"version_{seed}", {"seed_everything": seed, **ONE_EPOCH}, epochs, test, **kw)

    def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
        centre, half = p + z * z / (2 * n), z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
        return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    capped = run(2, 0.70, deviations=["trainer.max_epochs 5 (model4.yaml: 300)"])
    unfinished = interrupted("model4", tmp_path, 0.80, test=0.79)
    lines = _study_test_section({"model4": [run(0, 0.8450), run(1, 0.8200), capped, unfinished]})
    text = "\n".join(lines)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    low, high = wilson(0.8450, 10_000)
    assert rows[1] == ["model4", "version_0 (seed 0)", "84.50%", "10,000", f"{100 * low:.2f}%–{100 * high:.2f}%",
                       "83.01%", "+1.49 pp", "below the interval"]  # fmt: skip
    low, high = wilson(0.8200, 10_000)
    assert rows[2][4] == f"{100 * low:.2f}%–{100 * high:.2f}%" and rows[2][-1] == "above the interval"
    assert rows[3][1:3] == ["mean of 2 seeds (t-interval)", "83.25%"] and rows[3][-1] == "inside the interval"
    assert len(rows) == 4  # the capped run and the unfinished one are not the study's

    assert table_row("\n".join(_study_test_section({})), "The study's test accuracy", "model4")[1] == "not run yet"
    only_capped = table_row("\n".join(_study_test_section({"model4": [capped]})), "The study's test accuracy", "model4")
    assert only_capped[1] == "no run with the config's own settings (runs of others only)"
    untested = replace(run(0, 0.8), test=None, scalars={"train/loss_epoch": [(9, 1.0)], "val/acc": [(9, 0.8)]})
    row = table_row("\n".join(_study_test_section({"model4": [untested]})), "The study's test accuracy", "model4")
    assert row[1] == "not tested"


def test_runs_of_other_settings_are_shown_as_what_they_are_and_never_set_against_the_study(tmp_path):
    from cifar_lightning.tools.report import _seeds_section, _test_section

    def seeds(accs: list[float], max_epochs: int = 1, **kw) -> list[Run]:
        return [Run("model4", tmp_path / f"version_{i}", {"seed_everything": i, "trainer": {"max_epochs": max_epochs}},
                    {"val/acc": [(9, acc)], "val/loss": [(9, 1.0)], "train/loss_epoch": [(9, 1.0)]},
                    {"test/acc": acc - 0.01, "test/loss": 1.0, "checkpoint": "best.ckpt"}, **kw)
                for i, acc in enumerate(accs)]  # fmt: skip

    capped = seeds([0.45, 0.46], deviations=["trainer.max_epochs 1 (model4.yaml: 300)"])
    faithful = seeds([0.84, 0.86])
    for runs, status, study in ((capped, "other settings: trainer.max_epochs 1 (model4.yaml: 300)", False),
                                (faithful, "complete", True)):  # fmt: skip
        text = "\n".join(_seeds_section({"model4": runs}) + _test_section({"model4": runs}, {"model4": runs}))
        across = table_row(text, "Across seeds", "model4")
        assert across[6:8] == (["85.90%", "inside the seeds' range"] if study else ["—", f"not compared: {status}"])
        assert across[-1] == ("83.01%" if study else "—")
        tested = table_row(text, "Test accuracy", "model4")
        assert tested[2] == status
        assert tested[5:7] == (["83.01%", f"{83 - 83.01:+.2f} pp"] if study else ["—", "—"])
        # the highest value is not called the best: that is the claims section's verdict over seeds
        highest = "Highest validation accuracy among the study's models: **model4** (85.00%, mean of 2 seeds); "
        highest += "its test accuracy: **84.00%**, mean of 2 seeds."
        assert (highest in text) == study and ("Best validation accuracy among" not in text)

    # one seed stopped early: its runs are not a result, and a lone finished seed has no spread to show
    assert _seeds_section({"model4": [faithful[0], seeds([0.9], max_epochs=300)[0]]}) == []


def test_a_ladder_rung_says_how_far_a_stopped_run_got_and_one_seed_shows_no_spread(tmp_path):
    from cifar_lightning.tools.report import _ladder_section

    def run(model: str, seed: int, epochs_done: int) -> Run:
        ends = [(10 * e + 9, 1.0) for e in range(epochs_done)]
        test = {"test/acc": 0.5, "test/loss": 1.0, "test/ece": 0.02, "test/ece_temperature_scaled": 0.01}
        config = {"seed_everything": seed, "trainer": {"max_epochs": 5}}
        scalars = {"train/loss_epoch": ends, "val/acc": ends}
        return Run(model, tmp_path / model / f"version_{seed}", config, scalars, test)

    assert [rung.config for rung in LADDER[:2]] == ["model4", "model4-aug"]
    model4 = [run("model4", 0, 5), run("model4", 1, 2)]
    assert _ladder_section({"model4": model4}) == []  # one rung compares nothing
    section = "\n".join(_ladder_section({"model4": model4, "model4-aug": [run("model4-aug", 0, 5)]}))
    assert table_row(section, "Ablation ladder", LADDER[0].adds)[1:5] == [
        "`model4`",
        "2 of 5, 5",
        "2",
        "50.00 ± 0.00% (50.00, 50.00)",
    ]
    assert table_row(section, "Ablation ladder", LADDER[1].adds)[1:] == [
        "`model4-aug`", "5", "1", "50.00%", "0.0200", "0.0100", "100.00%"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("model7_bf16", "verdict", "model4_seeds"),
    [
        ([0.765, 0.775, 0.757], "admitted", "0, 1, 2"),  # within the fp32 seeds' noise
        ([0.735, 0.736, 0.737], "not admitted: the interval excludes zero for model7 best val", "0"),
        ([0.765, 0.775], "not decided: model7 has 3 fp32 and 2 bf16 tested seeds", "0"),
    ],
)
def test_bf16_runs_count_as_seeds_only_where_the_precision_rule_admits_them(
    tmp_path, model7_bf16, verdict, model4_seeds
):
    from scipy import stats

    from cifar_lightning.runs.identity import Experiment, identity
    from cifar_lightning.tools.report import (
        _hyperparameter_section,
        _precision_section,
        _runs_section,
        _study_table_section,
        per_seed,
        precision_rule,
    )

    fp32 = {"trainer": {"max_epochs": 1}}
    bf16 = {"trainer": {"max_epochs": 1, "precision": "bf16-mixed"}}
    experiment = Experiment(identity(fp32), {"trainer.precision": "32-true"})

    def seeds(model: str, accs: list[float], config: dict, first: int = 0) -> list[Run]:
        return [Run(model, tmp_path / model / f"version_{first + i}", {"seed_everything": i, **config},
                    {"val/acc": [(9, acc)], "val/loss": [(9, 1.0)], "train/loss_epoch": [(9, 1.0)]},
                    {"test/acc": acc - 0.02, "images": 10_000}, deviations=experiment.differences(config, seed=False))
                for i, acc in enumerate(accs)]  # fmt: skip

    model1 = [0.731, 0.726, 0.740]
    model7 = [0.770, 0.760, 0.777]
    runs = {
        "model1": seeds("model1", model1, fp32) + seeds("model1", [0.733, 0.728, 0.735], bf16, 3),
        "model4": seeds("model4", [0.829], fp32) + seeds("model4", [0.80, 0.83, 0.84], bf16, 1),
        "model7": seeds("model7", model7, fp32) + seeds("model7", model7_bf16, bf16, 3),
    }
    chosen = {model: per_seed(found) for model, found in runs.items()}
    rule = precision_rule(runs, chosen)
    assert rule.verdict.startswith(verdict)
    assert rule.admitted == (verdict == "admitted")
    if rule.admitted:
        chosen = {model: per_seed(found, admit_stand_ins=True) for model, found in runs.items()}
    # model4's seed 0 stays the fp32 run; its bf16 run of seed 0 stands in for nothing
    assert [r.path.name for r in chosen["model4"]] == (
        ["version_0", "version_2", "version_3"] if rule.admitted else ["version_0"]
    )
    text = "\n".join(_precision_section(rule) + _hyperparameter_section(chosen) + _study_table_section(chosen))
    assert f"**bf16-mixed: {rule.verdict}.**" in text
    row = table_row(text, "bf16 against fp32", "model7")
    low, high = stats.ttest_ind(model7_bf16, model7, equal_var=False).confidence_interval(0.95)
    difference = statistics.mean(model7_bf16) - statistics.mean(model7)
    assert row[1] == f"3 / {len(model7_bf16)}"
    assert row[4] == f"{100 * difference:+.2f} pp ({100 * low:+.2f} to {100 * high:+.2f})"
    assert row[-1] == ("differs: best val, test" if high < 0 else "no difference detected")
    hyper = table_row(text, "Hyperparameters", "model4")
    assert hyper[-2:] == (
        [model4_seeds, "32-true (seed 0); bf16-mixed (seeds 1, 2)"] if rule.admitted else ["0", "32-true"]
    )
    ours = table_row(text, "The study's table, reproduced", "model4")[-1]
    assert ours.endswith(" (seeds 1, 2 in bf16-mixed)") == rule.admitted
    assert ("3 seeds" in ours) == rule.admitted
    used = "\n".join(_runs_section(chosen, runs))
    assert ("model4/version_2` (complete, bf16-mixed; epochs logged: 1)" in used) == rule.admitted
    model4 = [line for line in used.splitlines() if line.startswith("- model4:")][-1]
    unused = model4.split("; not used: ")[1] if "not used" in model4 else ""
    assert [name for name in ("version_1", "version_2", "version_3") if name in unused] == (
        ["version_1"] if rule.admitted else ["version_1", "version_2", "version_3"]
    )
