"""The fast tier's smoke runs: one short model1 run made once (``trained_project``), then each command a user
types on it, through ``python -m cifar_lightning`` in-process. The full tier tests each of them in depth."""

import csv
import json
from pathlib import Path

import pytest
from helpers import QUIET, data_args, make_arrays
from PIL import Image

from cifar_lightning.__main__ import main as package_main

pytestmark = pytest.mark.smoke


@pytest.fixture
def inside(trained_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(trained_project)
    return trained_project


def run(folder: Path, *args: str) -> int:
    return package_main([*args, *data_args(folder / "data"), *QUIET])


def test_fit_leaves_a_best_checkpoint_and_last(inside):
    names = sorted(p.name for p in (inside / "lightning_logs/model1/version_0/checkpoints").iterdir())
    assert len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("epoch=00")


def test_test_records_the_best_checkpoint_on_every_test_image(inside):
    assert run(inside, "test", "--config=configs/model1.yaml", "--ckpt_path=best") == 0
    folder = inside / "lightning_logs/model1/version_0"
    record = json.loads((folder / "test_results.json").read_text())
    (best,) = (folder / "checkpoints").glob("epoch=*")
    assert record["checkpoint"].endswith(best.name) and sum(map(sum, record["confusion"])) == 200
    assert record["test/acc"] == pytest.approx(sum(record["confusion"][i][i] for i in range(10)) / 200)


def test_predict_writes_one_row_per_image(inside):
    (inside / "photos").mkdir(exist_ok=True)
    for i, image in enumerate(make_arrays(n_train=0, n_test=3)["x_test"]):
        Image.fromarray(image).save(inside / "photos" / f"{i}.png")
    assert run(inside, "predict", "--config=configs/model1.yaml", "--data.predict_path=photos") == 0
    with open(inside / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4 and rows[0][:3] == ["file", "class", "probability"]
    assert all(abs(sum(float(p) for p in row[3:]) - 1) < 1e-4 for row in rows[1:])


def test_report_tabulates_the_run(inside):
    assert package_main(["report", "--out=reports", "--data.data_dir=data"]) == 0
    report = (inside / "reports/report.md").read_text()
    assert "| model1 |" in report and (inside / "reports/figures").is_dir()


def test_export_writes_an_onnx_model_that_agrees_with_the_checkpoint(inside, capsys):
    pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")
    assert package_main(["export", "--config=configs/model1.yaml", "--output=m.onnx", "--data.data_dir=data"]) == 0
    assert "check on 128 validation images" in capsys.readouterr().out and (inside / "m.onnx").is_file()
