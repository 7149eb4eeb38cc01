"""The command line's process keeps the memory a training step frees (glibc's mallopt thresholds)."""

import runpy
import sys

import pytest

from cifar_lightning.training import malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_accepts_the_thresholds():
    assert malloc.keep_freed_memory() is True


def test_without_mallopt_nothing_is_set(monkeypatch):
    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda name: object())  # a C library without mallopt (musl)
    assert malloc.keep_freed_memory() is False


def test_python_m_cifar_lightning_sets_them_before_anything_runs(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(malloc, "keep_freed_memory", lambda: calls.append("set"))
    monkeypatch.setattr(sys, "argv", ["cifar_lightning", "--help"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("cifar_lightning", run_name="__main__")
    assert exit.value.code == 0 and calls == ["set"]
    assert "usage: python -m cifar_lightning COMMAND" in capsys.readouterr().out
