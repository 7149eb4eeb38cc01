"""The one atomic write: whole files only, with the mode any other file written here would have."""

import os
import stat

import pytest

from cifar_lightning.atomic import atomic_write


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

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
