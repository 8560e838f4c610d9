"""Remote kernels through a real jupyter_server and a real Kernel Gateway on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import kernelwire
from kernelwire import KernelTimeout, requests
from kernelwire.connection_file import free_tcp_ports
from kernelwire.remote import (
    AuthenticationError,
    JupyterServer,
    ServerConnectionError,
    connect_server,
)

TOKEN = "kernelwire-test-token"


SERVER_PORT_TRIES = 3


@contextlib.contextmanager
def serving(
    argv_for: Callable[[int], list[str]],
    tmp: Path,
    prefix: str = "/",
    scheme: str = "http",
    verify: bool | str = True,
) -> Iterator[str]:
    """Run a server command (``argv_for(port)``) on 127.0.0.1 until it answers; kill its
    process group after.

    The port is free when picked, but another test worker's server or kernel may take it
    first: the server (run with no port retries of its own) then exits saying so, and
    it starts again on a new port. The server that answers must be this one: every test
    server has the same token, so another worker's on the same port would answer too.
    """
    env = dict(
        os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_DATA_DIR=str(tmp / "data")
    )
    for attempt in range(1, SERVER_PORT_TRIES + 1):
        port = free_tcp_ports(count=1)[0]
        log_path = tmp / "server.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            argv_for(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=tmp,
        )
        url = f"{scheme}://127.0.0.1:{port}{prefix}"
        try:
            deadline = time.monotonic() + 60
            while not (_listens(proc, port) and _answers(url, verify)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                yield url
                return
            output = log_path.read_text(errors="replace")
            if proc.poll() is None or "in use" not in output or attempt == SERVER_PORT_TRIES:
                raise RuntimeError(output)
        finally:
            _stop_server(proc)
            log.close()
    raise AssertionError("unreachable")


def _answers(url: str, verify: bool | str) -> bool:
    try:
        connect_server(url, TOKEN, verify=verify).close()
    except ServerConnectionError:
        return False
    return True


def _listens(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether ``proc`` itself listens on ``port``."""
    try:
        connections = psutil.Process(proc.pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def jupyter_server_argv(port: int, root: Path, *options: str) -> list[str]:
    """The command line of a test jupyter_server on 127.0.0.1:``port`` (no port retries
    of its own: :func:`serving` retries), rooted at ``root``."""
    return [
        sys.executable,
        "-m",
        "jupyter_server",
        "--allow-root",
        "--no-browser",
        f"--ServerApp.token={TOKEN}",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        *options,
    ]


@contextlib.contextmanager
def running_jupyter_server(tmp: Path, prefix: str = "/prefix/") -> Iterator[str]:
    """A jupyter_server rooted at ``tmp`` (an existing folder), under ``prefix``."""
    pytest.importorskip("jupyter_server", reason="jupyter_server is installed by the test extras")

    def argv_for(port: int) -> list[str]:
        return jupyter_server_argv(port, tmp, f"--ServerApp.base_url={prefix}")

    with serving(argv_for, tmp, prefix) as url:
        yield url


@pytest.fixture(scope="module")
def jupyter_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_jupyter_server(tmp_path_factory.mktemp("jupyter-server")) as url:
        yield url


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip(
        "kernel_gateway", reason="jupyter_kernel_gateway is installed by the test extras"
    )
    tmp = tmp_path_factory.mktemp("gateway")

    def argv_for(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kernel_gateway",
            f"--KernelGatewayApp.auth_token={TOKEN}",
            f"--KernelGatewayApp.port={port}",
            "--KernelGatewayApp.ip=127.0.0.1",
            "--KernelGatewayApp.port_retries=0",
        ]

    with serving(argv_for, tmp) as url:
        yield url


@pytest.fixture(params=["jupyter_server", "gateway"])
def server(request: pytest.FixtureRequest) -> Iterator[JupyterServer]:
    url = request.getfixturevalue(
        "jupyter_server_url" if request.param == "jupyter_server" else "gateway_url"
    )
    with connect_server(url, TOKEN) as handle:
        yield handle


@pytest.mark.parametrize("framing", ["v1", "legacy"])
def test_core_flow_run_stdin_interrupt_restart(server: JupyterServer, framing: str) -> None:
    assert "python3" in server.kernel_specs()
    with server.start_kernel("python3") as kernel:
        client = kernel.client(subprotocols=None if framing == "v1" else [])
        expected = "v1.kernel.websocket.jupyter.org" if framing == "v1" else None
        assert client.engine.transport.subprotocol == expected  # type: ignore[attr-defined]
        # the classic flow, over the WebSocket
        msg_id = client.execute("x = 42\ny = x * 2\ny")
        msgs = []
        while True:
            msg = client.get_iopub_msg(timeout=5)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # the server's own probes (kernel_info at connect) broadcast too
            msgs.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert [m["msg_type"] for m in msgs] == [
            "status",
            "execute_input",
            "execute_result",
            "status",
        ]
        assert (
            msgs[2]["content"]["data"]["text/plain"] == "84"
            and msgs[2]["parent_header"]["msg_id"] == msg_id
        )
        assert msgs[0]["header"]["date"].tzinfo is not None
        assert kernel.run("6 * 7").text == "42"
        assert kernel.run("input('name? ')", stdin=lambda prompt, password: "Ada").text == "'Ada'"
        started = time.monotonic()
        with pytest.raises(KernelTimeout):
            kernel.run("import time; time.sleep(100)", timeout=1)
        assert time.monotonic() - started < 8
        kernel.restart()
        assert kernel.run("'x' in dir()").text == "False"  # namespace gone, client still works


def test_comms_and_binary_buffers(server: JupyterServer) -> None:
    target = (
        "from comm import get_comm_manager\n"
        "def _open(comm, msg):\n"
        "    @comm.on_msg\n"
        "    def _echo(m):\n"
        "        data = bytes(reversed(m['buffers'][0]))\n"
        "        comm.send({'n': m['content']['data']['n'] + 1}, buffers=[data])\n"
        "get_comm_manager().register_target('kw_echo', _open)\n"
    )
    with server.start_kernel("python3") as kernel:
        client = kernel.client()
        assert client.execute(target, reply=True, timeout=30)["content"]["status"] == "ok"
        list(client.submit(requests.comm_open("c1", "kw_echo", {})).iopub(30))
        pending = client.submit(requests.comm_msg("c1", {"n": 1}, buffers=[b"\x00\x01\x02"]))
        echoes = [m for m in pending.iopub(30) if m["msg_type"] == "comm_msg"]
        assert echoes[0]["content"]["data"] == {"n": 2}
        assert bytes(echoes[0]["buffers"][0]) == b"\x02\x01\x00"


def test_reconnect_delivers_every_output_exactly_once(jupyter_server_url: str) -> None:
    with (
        connect_server(jupyter_server_url, TOKEN) as server,
        server.start_kernel("python3") as kernel,
    ):
        client = kernel.client()
        code = "import time\nfor i in range(30):\n    print(i, flush=True)\n    time.sleep(0.1)"
        pending = client.submit(requests.execute(code))

        def cut() -> None:
            time.sleep(1.0)  # mid-execution: the socket dies under the client
            client.engine.transport.ws.socket.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]

        threading.Thread(target=cut).start()
        text = "".join(m["content"]["text"] for m in pending.iopub(60) if m["msg_type"] == "stream")
        assert client.engine.transport.reconnects == 1  # type: ignore[attr-defined]
        assert text == "".join(f"{i}\n" for i in range(30))


def test_attach_to_an_existing_kernel(jupyter_server_url: str) -> None:
    with (
        connect_server(jupyter_server_url, TOKEN) as server,
        server.start_kernel("python3") as owner,
    ):
        owner.run("shared = 'yes'")
        with server.kernel(owner.kernel_id) as attached:  # leaving it does not delete the kernel
            assert attached.run("shared").text == "'yes'"
        assert owner.is_alive()
        assert owner.kernel_id in {k["id"] for k in server.list_kernels()}
    with connect_server(jupyter_server_url, TOKEN) as server:
        assert owner.kernel_id not in {k["id"] for k in server.list_kernels()}


def test_a_test_server_whose_port_is_taken_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixtures' servers: a port another worker took first means a start on a new
    one, and the server that answers is the fixture's own, not the port's holder."""
    pytest.importorskip("jupyter_server")
    real = free_tcp_ports
    (tmp_path / "holder").mkdir()
    with running_jupyter_server(tmp_path / "holder") as holder_url:
        taken = urllib.parse.urlsplit(holder_url).port
        assert taken is not None
        picks = iter([[taken]])

        def pick(count: int = 1) -> list[int]:
            return next(picks, None) or real(count=count)

        monkeypatch.setattr(sys.modules[__name__], "free_tcp_ports", pick)
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "only-here.txt").write_text("")
        with running_jupyter_server(tmp_path / "mine", prefix="/") as url:
            assert urllib.parse.urlsplit(url).port != taken
            with connect_server(url, TOKEN) as server:
                listing = server.transport.request("GET", "api/contents")["content"]
            assert "only-here.txt" in [item["name"] for item in listing]


def test_wrong_token_and_server_down(jupyter_server_url: str) -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        connect_server(jupyter_server_url, "wrong-token")
    assert jupyter_server_url in str(excinfo.value) and "wrong-token" not in str(excinfo.value)
    port = free_tcp_ports(count=1)[0]
    started = time.monotonic()
    with pytest.raises(ServerConnectionError, match=f"127.0.0.1:{port}"):
        connect_server(f"http://127.0.0.1:{port}/", TOKEN)
    assert time.monotonic() - started < 5
    with connect_server(jupyter_server_url, TOKEN) as server:
        assert TOKEN not in repr(server) and TOKEN not in repr(server.transport)
        # an unknown kernel: the server's names, not its error page (issue 13, defect 10)
        with pytest.raises(kernelwire.NoSuchKernel) as unknown:
            server.start_kernel("no-such-kernel")
        assert "python3" in unknown.value.available
        assert "no kernel named 'no-such-kernel' on http" in str(unknown.value)
        assert "<html" not in str(unknown.value).lower()
    assert isinstance(excinfo.value, kernelwire.KernelwireError)


def test_notebook_and_cli_on_a_server(jupyter_server_url: str, tmp_path: Path) -> None:
    import nbformat

    from kernelwire import notebook

    source = Path(__file__).parent / "notebooks" / "display_ids.ipynb"
    with connect_server(jupyter_server_url, TOKEN) as server:
        remote = notebook.execute(source, server=server)
        before = {k["id"] for k in server.list_kernels()}
        runs = notebook.execute_many([source] * 3, server=server, jobs=2)
        assert {k["id"] for k in server.list_kernels()} == before  # the batch's are deleted
    local = notebook.execute(source)
    assert [c.outputs for c in remote.cells] == [c.outputs for c in local.cells]
    for run in runs:
        assert run.ok and run.notebook is not None, run.error
        assert [c.outputs for c in run.notebook.cells] == [c.outputs for c in local.cells]
    out = tmp_path / "out.ipynb"
    base = [sys.executable, "-m", "kernelwire.cli"]
    server_args = ["--server", jupyter_server_url, "--token", TOKEN]
    done = subprocess.run(
        [*base, "run", *server_args, "-c", "print('remote')\n6 * 7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout == "remote\n42\n", done.stderr
    done = subprocess.run(
        [*base, "notebook", "run", str(source), "-o", str(out), *server_args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert nbformat.read(out, as_version=4).cells[0].outputs
    refused = subprocess.run(
        [*base, "run", "--server", jupyter_server_url, "--token", "nope", "-c", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        refused.returncode == 2
        and "refused the token" in refused.stderr
        and "nope" not in refused.stderr
    )


def test_cli_kernels_and_start_on_a_server(jupyter_server_url: str) -> None:
    """``kernels`` and ``start`` take --server (issue 13, defect 10): the server's specs;
    a kernel on the server until Ctrl-C, then deleted."""
    base = [sys.executable, "-m", "kernelwire"]
    server_args = ["--server", jupyter_server_url, "--token", TOKEN]
    listed = subprocess.run(
        [*base, "kernels", *server_args, "--json"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "python3" in json.loads(listed.stdout)
    start = subprocess.Popen(
        [*base, "start", *server_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert start.stdout is not None
        first = start.stdout.readline()
        assert first.startswith("Started kernel python3 on "), first + start.stderr.read()
        kernel_id = first.rsplit("id ", 1)[1].strip()
        with connect_server(jupyter_server_url, TOKEN) as server:
            assert kernel_id in {k["id"] for k in server.list_kernels()}
            with server.kernel(kernel_id) as kernel:
                assert kernel.run("6 * 7").text == "42"
            start.send_signal(signal.SIGINT)
            assert start.wait(60) == 0
            assert kernel_id not in {k["id"] for k in server.list_kernels()}
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()


def test_async_client_over_the_server(jupyter_server_url: str) -> None:
    import asyncio

    async def main() -> None:
        with (
            connect_server(jupyter_server_url, TOKEN) as server,
            server.start_kernel("python3") as kernel,
        ):
            client = kernel.async_client()
            await client.wait_for_ready(60)
            reply = await client.execute("6 * 7", reply=True, timeout=30)
            assert reply["content"]["status"] == "ok"
            slow = client.submit(requests.execute("import time; time.sleep(0.2); print('slow')"))
            fast = client.submit(requests.execute("print('fast')"))
            fast_text = [
                m["content"]["text"] async for m in fast.iopub(30) if m["msg_type"] == "stream"
            ]
            slow_text = [
                m["content"]["text"] async for m in slow.iopub(30) if m["msg_type"] == "stream"
            ]
            assert (fast_text, slow_text) == (["fast\n"], ["slow\n"])
            assert await client.is_alive()
            client.stop_channels()

    asyncio.run(main())


def test_https_and_wss(tmp_path: Path) -> None:
    """TLS end to end: https for REST, wss for the channels, the server's CA verified."""
    trustme = pytest.importorskip("trustme")
    pytest.importorskip("jupyter_server")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))

    def argv_for(port: int) -> list[str]:
        return jupyter_server_argv(
            port, tmp_path, f"--ServerApp.certfile={certfile}", f"--ServerApp.keyfile={keyfile}"
        )

    with serving(argv_for, tmp_path, scheme="https", verify=str(cafile)) as url:
        with (
            connect_server(url, TOKEN, verify=str(cafile)) as server,
            server.start_kernel("python3") as kernel,
        ):
            assert kernel.run("6 * 7").text == "42"
        with pytest.raises(ServerConnectionError):
            connect_server(url, TOKEN)  # the system trust store does not know this CA


def test_cli_takes_the_token_in_the_url_a_server_prints(jupyter_server_url: str) -> None:
    """Issue 13, defect 10 (in part): ``--server URL?token=T``, the URL a Jupyter Server
    prints, is that server with that token (it was sent on and refused with 403)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernelwire.cli",
            "run",
            "--server",
            f"{jupyter_server_url}?token={TOKEN}",
            "-c",
            "print('remote')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"},
    )
    assert done.returncode == 0 and done.stdout == "remote\n", done.stderr
