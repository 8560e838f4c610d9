"""Notebook files written atomically, and kept up to date while a notebook runs."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from kernelwire._saving import Autosave, write_atomic


def test_write_atomic_replaces_the_file_whole_with_a_plain_files_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.ipynb"
    target.write_text("old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.ipynb"]


def test_write_atomic_leaves_the_old_file_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.ipynb"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.ipynb"]


def test_autosave_writes_soon_after_a_change_and_once_more_when_closed(tmp_path: Path) -> None:
    target = tmp_path / "running.ipynb"
    nb: dict[str, object] = {"cells": [], "metadata": {}}
    saver = Autosave(nb, target)
    try:
        with saver.lock:
            nb["cells"] = [{"cell_type": "code", "source": "1", "outputs": []}]
        saver.changed()
        deadline = time.monotonic() + 30
        while not (target.exists() and json.loads(target.read_text())["cells"]):
            assert time.monotonic() < deadline, "the change was never saved"
            time.sleep(0.02)
        with saver.lock:
            nb["metadata"] = {"widgets": "state"}  # a change with no changed() after it
    finally:
        saver.close()
    assert json.loads(target.read_text()) == nb
    assert not saver._thread.is_alive()
