"""A notebook batch spread over several servers (``execute_many(servers=[...])``,
``kernelwire notebook run --server A --server B``): real Enterprise Gateways and Jupyter
Servers on 127.0.0.1, one of them killed mid-batch (issue 16)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import psutil
import pytest

from kernelwire import notebook
from kernelwire.errors import CellExecutionError, KernelwireError
from kernelwire.remote import connect_server
from test_enterprise_gateway import USER, _alive, eg_venv, enterprise_gateway  # noqa: F401
from test_remote import TOKEN, running_jupyter_server

pytestmark = pytest.mark.timeout(600)

LIST_KERNELS = "--EnterpriseGatewayApp.list_kernels=True"
"""So that a test can ask a gateway which kernels it still has."""
KILL_WAIT = 240.0
"""Seconds the killer waits for a notebook to run on the doomed server (a safety net)."""


def write_notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def server_process(url: str) -> psutil.Process:
    """The process of the server this test started at ``url`` (one of our children)."""
    port = urlsplit(url).port
    return next(
        child
        for child in psutil.Process().children()
        if f"port={port}" in " ".join(child.cmdline())
    )


def kernels_of(server: psutil.Process) -> list[psutil.Process]:
    """The live processes a server started (its kernels)."""
    with contextlib.suppress(psutil.Error):
        return [child for child in server.children(recursive=True) if _alive(child)]
    return []


@contextlib.contextmanager
def two_servers(kind: str, venv: Path | None, tmp: Path) -> Iterator[tuple[str, str]]:
    """Two Enterprise Gateways (``kind="enterprise"``, from ``venv``) or two Jupyter
    Servers, each in a folder of its own under ``tmp``."""
    with contextlib.ExitStack() as stack:
        urls = []
        for name in ("a", "b"):
            folder = tmp / f"{kind}-{name}"
            folder.mkdir()
            if kind == "enterprise":
                assert venv is not None
                server = enterprise_gateway(venv, folder, LIST_KERNELS)
            else:
                server = running_jupyter_server(folder, "/")
            urls.append(stack.enter_context(server))
        yield urls[0], urls[1]


@pytest.fixture(scope="module")
def gateway_pair(
    eg_venv: Path,  # noqa: F811 - the fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    with two_servers("enterprise", eg_venv, tmp_path_factory.mktemp("gateways")) as urls:
        yield urls


def kill_once_busy(
    doomed: psutil.Process, marks: Path, go: Path, killed: list[psutil.Process]
) -> None:
    """Once a notebook's kernel on ``doomed`` has written its mark (so a notebook is
    running there), kill the server and its kernels, as a machine going away would;
    then let every notebook go on (``go``)."""
    try:
        deadline = time.monotonic() + KILL_WAIT
        while time.monotonic() < deadline:
            running = {kernel.pid for kernel in kernels_of(doomed)}
            if any(int(mark.name) in running for mark in marks.iterdir()):
                doomed.suspend()  # starts no kernel while its kernels are listed
                victims = [doomed, *doomed.children(recursive=True)]
                for victim in victims:
                    victim.kill()
                killed.extend(victims)
                return
            time.sleep(0.05)
    finally:
        go.touch()


@pytest.mark.parametrize("kind", ["enterprise", "jupyter"])
def test_a_batch_survives_a_server_killed_mid_batch(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    venv = request.getfixturevalue("eg_venv") if kind == "enterprise" else None
    marks = tmp_path / "marks"
    marks.mkdir()
    go = tmp_path / "go"
    paths = [
        write_notebook(
            tmp_path / f"n{i}.ipynb",
            f"import os, time\nopen(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()",
            f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)",
            f"print({i} * 7)",
            f"{i} + 100",
        )
        for i in range(4)
    ]
    killed: list[psutil.Process] = []
    caplog.set_level("WARNING", logger="kernelwire.notebook")
    with two_servers(kind, venv, tmp_path) as (url_a, url_b):
        survivor, doomed = server_process(url_a), server_process(url_b)
        killer = threading.Thread(target=kill_once_busy, args=(doomed, marks, go, killed))
        with connect_server(url_a, TOKEN) as a, connect_server(url_b, TOKEN) as b:
            killer.start()
            try:
                runs = notebook.execute_many(paths, servers=[a, b], jobs=2, kernel_env=USER)
            finally:
                go.touch()
                killer.join()
            assert killed, f"no notebook ran on {url_b}: nothing was killed mid-batch"
            for i, run in enumerate(runs):
                assert run.ok, run.error
                assert run.notebook is not None
                assert run.notebook.cells[2].outputs[0]["text"] == f"{i * 7}\n"
                assert run.notebook.cells[3].outputs[0]["data"]["text/plain"] == str(i + 100)
                assert run.server == url_a
                assert run.retried_from in (None, url_b)
            moved = [run for run in runs if run.retried_from is not None]
            assert moved, "no notebook was moved off the killed server"
            for run in moved:
                assert isinstance(run.retry_cause, KernelwireError)
                assert run.retried_from == url_b
            assert f"Jupyter server {url_b} stopped answering" in caplog.text
            # No kernel left: the survivor's were deleted, the dead server's were killed.
            deadline = time.monotonic() + 60
            while kernels_of(survivor):
                assert time.monotonic() < deadline, f"kernels left: {kernels_of(survivor)}"
                time.sleep(0.2)
            assert a.list_kernels() == []
    assert not [process for process in killed if _alive(process)]


def test_cell_errors_are_not_moved_and_the_batch_is_spread(
    gateway_pair: tuple[str, str], tmp_path: Path
) -> None:
    tally = tmp_path / "tally"
    paths = [
        write_notebook(
            tmp_path / f"f{i}.ipynb",
            f"with open({str(tally)!r}, 'a') as f:\n    f.write('{i}')",
            f"1 / {i % 2}",
        )
        for i in range(4)
    ]
    url_a, url_b = gateway_pair
    with connect_server(url_a, TOKEN) as a, connect_server(url_b, TOKEN) as b:
        runs = notebook.execute_many(paths, servers=[a, b], jobs=2, kernel_env=USER)
    assert {run.server for run in runs} == {url_a, url_b}  # both servers had work
    for i, run in enumerate(runs):
        assert run.retried_from is None and run.retry_cause is None
        if i % 2:
            assert run.ok, run.error
        else:
            assert isinstance(run.error, CellExecutionError), run.error
            assert run.error.ename == "ZeroDivisionError"
    assert sorted(tally.read_text()) == ["0", "1", "2", "3"]  # each ran once


def test_options_for_servers_are_checked(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "x.ipynb", "1")
    with pytest.raises(ValueError, match="server or servers"):
        notebook.execute_many([path], server=object(), servers=[object()])  # type: ignore[arg-type,list-item]
    with pytest.raises(ValueError, match="servers is empty"):
        notebook.execute_many([path], servers=[])
    with pytest.raises(ValueError, match="not for local kernels"):
        notebook.execute_many([path], kernel_env=USER)
    with pytest.raises(ValueError, match="not for local kernels"):
        notebook.execute(path, launch_timeout=30)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelwire", "notebook", "run", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JUPYTER_TOKEN=""),
    )


def test_the_cli_spreads_notebooks_over_servers_with_env_and_launch_timeout(
    gateway_pair: tuple[str, str], tmp_path: Path
) -> None:
    code = (
        "import os\n"
        "print(os.environ['KERNEL_USERNAME'], os.environ['KERNEL_LAUNCH_TIMEOUT'])\n"
        "print(os.getppid())"
    )
    paths = [str(write_notebook(tmp_path / f"c{i}.ipynb", code)) for i in range(2)]
    url_a, url_b = gateway_pair
    servers = ["--server", url_a, "--server", url_b, "--token", TOKEN]
    done = cli(
        *paths, *servers, "-j", "2", "--env", "KERNEL_USERNAME=ada", "--launch-timeout", "90"
    )
    assert done.returncode == 0, done.stderr
    parents = set()
    for path in paths:
        nb = nbformat.read(path.replace(".ipynb", ".executed.ipynb"), as_version=4)
        user, parent = nb.cells[0].outputs[0]["text"].splitlines()
        assert user == "ada 90"  # --env and --launch-timeout reached the kernel
        parents.add(int(parent))
    assert parents == {server_process(url_a).pid, server_process(url_b).pid}
    assert done.stdout.count("Executed 1 code cell of") == 2


def test_cli_usage_errors_for_servers(tmp_path: Path) -> None:
    path = str(write_notebook(tmp_path / "u.ipynb", "1"))
    malformed = cli(path, "--server", "http://127.0.0.1:9", "--env", "KERNEL_USERNAME")
    assert malformed.returncode == 2
    assert "argument --env: expected KEY=VALUE" in malformed.stderr
    assert "'KERNEL_USERNAME'" in malformed.stderr
    for option in (["--env", "KERNEL_USERNAME=ada"], ["--launch-timeout", "30"]):
        local = cli(path, *option)
        assert local.returncode == 2
        assert f"notebook run: {option[0]} is for kernels started on a --server" in local.stderr
    unreachable = cli(path, "--server", "http://127.0.0.1:9", "--server", "http://127.0.0.1:9/b")
    assert unreachable.returncode == 2
    assert "cannot reach Jupyter server http://127.0.0.1:9/" in unreachable.stderr
    assert not (tmp_path / "u.executed.ipynb").exists()
