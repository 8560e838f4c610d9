"""Fixtures: real kernels started per test module, cleaned up even when a test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernelwire import BlockingKernelClient, KernelProcess, run_kernel_in_process
from kernelwire.connection_file import write_connection_file
from kernelwire.lifecycle.launcher import process_states


def pytest_configure(config: pytest.Config) -> None:
    """Kernels started by the tests keep IPython's files in a folder of this test process:
    the user's ``~/.ipython`` (its history database above all) is shared by every kernel
    on the machine, and concurrent writers there fail with "database is locked", which
    an IPython kernel prints into whichever cell is running."""
    folder = tempfile.mkdtemp(prefix="kernelwire-tests-ipython-")
    config.stash[_IPYTHONDIR] = (folder, os.environ.get("IPYTHONDIR"))
    os.environ["IPYTHONDIR"] = folder
    # Python kernels that time out while starting then show where they hang (the
    # launcher asks them with SIGABRT): a start-up hang was seen in CI with nothing else.
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")


def pytest_unconfigure(config: pytest.Config) -> None:
    folder, old = config.stash[_IPYTHONDIR]
    if old is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = old
    shutil.rmtree(folder, ignore_errors=True)


_IPYTHONDIR = pytest.StashKey[tuple[str, "str | None"]]()


@pytest.fixture(scope="module")
def ipykernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    """An ipykernel shared by the tests of one module."""
    path = tmp_path_factory.mktemp("kernel") / "kernel.json"
    kernel = run_kernel_in_process(path)
    try:
        yield kernel
    finally:
        kernel.stop()
    assert not path.exists(), "the connection file must be removed when the kernel stops"


@pytest.fixture
def fresh_kernel(tmp_path: Path) -> Iterator[KernelProcess]:
    """An ipykernel of the test's own (for tests that kill, shut down or pollute it)."""
    kernel = run_kernel_in_process(tmp_path / "kernel.json")
    try:
        yield kernel
    finally:
        kernel.stop()


@pytest.fixture
def client(ipykernel: KernelProcess) -> Iterator[BlockingKernelClient]:
    """A started blocking client of the module's ipykernel."""
    kc = BlockingKernelClient(ipykernel.connection_file)
    kc.start_channels()
    kc.wait_for_ready(30)
    try:
        yield kc
    finally:
        kc.stop_channels()


@contextlib.contextmanager
def launched(argv: list[str], connection_file: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run a kernel command line in its own process group; kill the group afterwards."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(connection_file)


@pytest.fixture(scope="module")
def xeus_connection_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running xeus-python kernel's connection file (the ``xpython`` kernel)."""
    pytest.importorskip("xpython_launcher", reason="xeus-python is installed by the test extras")
    path, _ = write_connection_file(tmp_path_factory.mktemp("xeus") / "kernel.json")
    with launched([sys.executable, "-m", "xpython_launcher", "-f", path], path) as proc:
        with BlockingKernelClient(path) as kc:
            try:
                kc.wait_for_ready(60)
            except Exception:
                proc.kill()
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"xeus-python did not start: {stderr}") from None
        yield path


def child_pids() -> set[int]:
    """Live (non-zombie) child processes of this test process."""
    me = os.getpid()
    return {pid for pid, fields in process_states() if int(fields[1]) == me and fields[0] != "Z"}


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a kernel process running (connection files are
    checked by the tests themselves, per kernel)."""
    children_before = child_pids()
    yield
    deadline = time.monotonic() + 10
    while child_pids() - children_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not child_pids() - children_before, "kernel processes left running"


@pytest.fixture(scope="session")
def bash_kernel_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bash_kernel's spec, installed into a private prefix put on JUPYTER_PATH."""
    pytest.importorskip("bash_kernel", reason="bash_kernel is installed by the test extras")
    prefix = tmp_path_factory.mktemp("bash-prefix")
    subprocess.run(
        [sys.executable, "-m", "bash_kernel.install", "--prefix", str(prefix)],
        check=True,
        capture_output=True,
    )
    data = str(prefix / "share" / "jupyter")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = data + (os.pathsep + old if old else "")
    try:
        yield "bash"
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
