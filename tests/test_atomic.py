"""The one atomic write: whole files only, with the mode any other file written here would have."""

import errno
import importlib
import os
import stat
import tempfile
from pathlib import Path

import pytest
from helpers import FIT, QUIET, data_args, make_arrays, make_project
from PIL import Image

from cifar_lightning.__main__ import main as package_main
from cifar_lightning.atomic import atomic_write
from cifar_lightning.errors import CifarError


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_honours_the_umask(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "report.md", lambda f: f.write("x"), mode="w")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == expected


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "test_results.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write(target, lambda f: f.write("new"), mode="w")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CifarError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(args[0]) if args else None)


def test_a_refused_write_is_one_error_naming_the_file_and_other_errors_stay_what_they_are(tmp_path):
    with pytest.raises(CifarError, match=r"cannot write .*model.onnx: No space left on device; no file was left"):
        atomic_write(tmp_path / "model.onnx", _no_space)

    def broken(f):
        raise OSError(errno.EIO, os.strerror(errno.EIO))  # not the user's disk or folder: not disguised as one

    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(tmp_path / "model.onnx", broken)
    assert not list(tmp_path.iterdir())


def _the_one_error(capsys, names: str, reason: str = "No space left on device") -> None:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in err, err  # besides the line saying which checkpoint is used
    assert errors[0].startswith("error: cannot write ") and names in errors[0] and reason in errors[0], errors[0]


@pytest.mark.parametrize(("refused", "names"), [("os.fsync", "config.yaml"), ("torch.save", ".ckpt")])
def test_a_fit_on_a_full_disk_is_one_error_and_no_half_file(tmp_path, monkeypatch, capsys, refused, names):
    """The run's config (written by the CLI's callback) and its checkpoints."""
    folder = make_project(tmp_path)
    monkeypatch.chdir(folder)
    module, name = refused.split(".")
    monkeypatch.setattr(importlib.import_module(module), name, _no_space)
    assert package_main([*FIT, *data_args(folder / "data"), *QUIET]) == 1
    _the_one_error(capsys, names)
    assert not list(folder.rglob("*.tmp")) and not list(folder.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["test", "--config=configs/model1.yaml"], "test_results"),
        (
            [
                "predict",
                "--config=configs/model1.yaml",
                "--data.predict_path=photo",
                "--prediction_writer.output=p.csv",
            ],
            "p.csv",
        ),
        (["report", "--out=full", "--data.data_dir=data"], "full/report.md"),
    ],
    ids=["test", "predict", "report"],
)
def test_every_command_on_a_full_disk_is_one_error_and_leaves_the_files_as_they_were(
    trained_project, monkeypatch, capsys, args, names
):
    monkeypatch.chdir(trained_project)
    (trained_project / "photo").mkdir(exist_ok=True)
    Image.fromarray(make_arrays(n_train=0, n_test=1)["x_test"][0]).save(trained_project / "photo/one.png")
    before = {p: p.read_bytes() for p in trained_project.rglob("*") if p.is_file() and "events" not in p.name}
    monkeypatch.setattr(os, "fsync", _no_space)
    lightning = args[0] != "report"
    assert package_main([*args, *(data_args(trained_project / "data") + QUIET if lightning else [])]) == 1
    _the_one_error(capsys, names)
    after = {p: p.read_bytes() for p in trained_project.rglob("*") if p.is_file() and "events" not in p.name}
    assert all(p.is_relative_to(trained_project / "full") for p in after.keys() - before.keys())
    assert all(after[p] == content for p, content in before.items()) and not list(trained_project.rglob("*.tmp"))


def test_a_report_into_a_read_only_folder_is_one_error(trained_project, monkeypatch, capsys):
    monkeypatch.chdir(trained_project)
    monkeypatch.setattr(tempfile, "mkdtemp", _read_only)
    assert package_main(["report", "--out=readonly", "--data.data_dir=data"]) == 1
    _the_one_error(capsys, "readonly", "Read-only file system")


def test_a_folder_the_disk_refuses_outside_the_atomic_write_is_one_error_too(tmp_path, monkeypatch, capsys):
    """Where a library or the run folder's own mkdir meets a read-only disk, the command line names the path."""
    folder = make_project(tmp_path)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(Path, "mkdir", lambda self, *args, **kwargs: _read_only(self))
    assert package_main([*FIT, *data_args(folder / "data"), *QUIET]) == 1
    _the_one_error(capsys, "lightning_logs", "Read-only file system")
