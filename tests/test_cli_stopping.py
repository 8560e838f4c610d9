"""The kernelwire command stopped early (SIGTERM, SIGHUP, Ctrl-C, a timeout): it leaves
nothing behind and stops in bounded time. Each test runs the command in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest


class Command:
    """A ``kernelwire`` subprocess whose kernels keep their files in folders of the test."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.runtime = tmp_path / "runtime"
        self.tmp = tmp_path / "tmp"
        self.runtime.mkdir()
        self.tmp.mkdir()
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime), "TMPDIR": str(self.tmp)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernelwire.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    def wait_for(self, path: Path) -> int:
        """Wait until the kernel wrote its pid to ``path``; return the pid."""
        deadline = time.monotonic() + 90
        while not path.exists() or not path.read_text():
            assert time.monotonic() < deadline, "the kernel never ran the cell"
            assert self.proc.poll() is None, self.proc.communicate()
            time.sleep(0.1)
        time.sleep(0.2)  # into the cell's sleep
        return int(path.read_text())

    def leftovers(self) -> list[str]:
        """Files the kernels left: connection files and kernel logs."""
        return sorted(p.name for folder in (self.runtime, self.tmp) for p in folder.iterdir())


@pytest.fixture
def command(tmp_path: Path) -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for cmd in started:
        if cmd.proc.poll() is None:
            cmd.proc.kill()
            cmd.proc.communicate()


def kernel_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)  # do not leave it behind
    return False


def sleeping_notebook(tmp_path: Path, code: str = "time.sleep(300)") -> Path:
    source = f"import os, time\nopen('kernel.pid', 'w').write(str(os.getpid()))\n{code}"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    path = tmp_path / "sleeps.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_notebook_run_stopped_by_a_signal_leaves_nothing_behind(
    tmp_path: Path, command: list[Command], signum: int
) -> None:
    """Issue 13, defect 6: SIGTERM (``timeout``, CI cancellation) and SIGHUP stop the
    run as Ctrl-C does: the kernel is gone, and so are its connection file and log."""
    cmd = Command(tmp_path, "notebook", "run", str(sleeping_notebook(tmp_path)))
    command.append(cmd)
    pid = cmd.wait_for(tmp_path / "kernel.pid")
    assert cmd.leftovers()  # the running kernel's files are there
    cmd.proc.send_signal(signum)
    assert cmd.proc.wait(60) == 128 + signum, cmd.proc.communicate()
    assert kernel_gone(pid)
    assert cmd.leftovers() == []


def test_start_stopped_by_sigterm_removes_its_connection_file(
    tmp_path: Path, command: list[Command]
) -> None:
    """Issue 13, defect 6: ``kernelwire start`` under SIGTERM shuts its kernel down."""
    connection_file = tmp_path / "kernel.json"
    cmd = Command(tmp_path, "start", "--connection-file", str(connection_file))
    command.append(cmd)
    assert cmd.proc.stdout is not None
    first = cmd.proc.stdout.readline()
    assert first.startswith("Started kernel"), cmd.proc.communicate()
    pid = int(first.split("pid ")[1].split(")")[0])
    cmd.proc.send_signal(signal.SIGTERM)
    cmd.proc.wait(60)
    assert kernel_gone(pid)
    assert not connection_file.exists()
    assert cmd.leftovers() == []


def test_ctrl_c_interrupts_the_cell_before_shutting_down(
    tmp_path: Path, command: list[Command]
) -> None:
    """Issue 13, defect 7: Ctrl-C interrupts the running cell first (the cell sees its
    KeyboardInterrupt), then shuts the kernel down; no shutdown_request to a busy kernel."""
    code = "try:\n    time.sleep(300)\nexcept KeyboardInterrupt:\n    open('interrupted', 'w')"
    cmd = Command(tmp_path, "notebook", "run", str(sleeping_notebook(tmp_path, code)))
    command.append(cmd)
    pid = cmd.wait_for(tmp_path / "kernel.pid")
    cmd.proc.send_signal(signal.SIGINT)
    assert cmd.proc.wait(60) == 130, cmd.proc.communicate()
    assert (tmp_path / "interrupted").exists()
    assert kernel_gone(pid)
    assert cmd.leftovers() == []


def test_a_cell_that_ignores_interrupts_is_stopped_without_waiting_on_shutdown(
    tmp_path: Path, command: list[Command]
) -> None:
    """Issue 13, defect 7: with ``--timeout``, a cell that ignores SIGINT gets its
    kernel stopped once the grace after the interrupt is over, not a shutdown_request
    it cannot act on (which cost 5 s more, and a warning that it had to be killed)."""
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(300)"
    source = sleeping_notebook(tmp_path, code)
    cmd = Command(tmp_path, "notebook", "run", "--timeout", "2", str(source))
    command.append(cmd)
    pid = cmd.wait_for(tmp_path / "kernel.pid")
    assert cmd.proc.wait(90) == 1
    _, stderr = cmd.proc.communicate()
    assert "cell In [1] (index 0) did not finish within 2 s" in stderr
    assert "shutdown_request" not in stderr and "terminating it" not in stderr, stderr
    assert kernel_gone(pid)
    assert cmd.leftovers() == []
    assert source.with_suffix(".executed.ipynb").exists()
