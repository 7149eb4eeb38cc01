"""Files the user names on the command line: a folder or nothing where a file should be is one error that says
which, before anything runs or is written."""

import pytest
from helpers import CONFIG_DIR, data_args

from cifar_lightning.__main__ import main

MODEL1 = str(CONFIG_DIR / "model1.yaml")


@pytest.mark.parametrize(
    ("argv", "start", "end"),
    [
        (["test", f"--config={MODEL1}", "--ckpt_path={}"], "error: checkpoint {}", ": pass a .ckpt file, best or last"),
        (["study", "--configs={}", "--seeds=0"], "error: config {}", ": pass a file from configs/"),
        (["serve", "--model={}"], "error: {}", ": pass an exported .onnx file or a checkpoint"),
        (["data", "--archive={}"], "error: {}", ": pass the cifar-10-python.tar.gz of the CIFAR-10 site"),
    ],
    ids=["checkpoint", "config", "served-model", "archive"],
)
@pytest.mark.parametrize(("name", "problem"), [("a-folder", "is a folder, not a file"), ("nothing", "does not exist")])
def test_a_folder_or_nothing_where_a_file_belongs_is_one_error_saying_which(
    tmp_path, data_dir, monkeypatch, capsys, argv, start, end, name, problem
):
    if "serve" in argv:
        pytest.importorskip("litserve", reason="the serve extra: pip install -e '.[serve]'")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    data = data_args(data_dir) if argv[0] == "test" else []
    assert main([*(arg.format(name) for arg in argv), *data]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"{start.format(name)} {problem}{end}", err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
