"""``kernelwire mcp``: the server run as a real subprocess (``python -m kernelwire mcp``)
and driven over stdio by the MCP SDK's own client, as an agent's MCP client drives it."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp", reason="the MCP SDK is installed by the test extras")
anyio = pytest.importorskip("anyio")
psutil = pytest.importorskip("psutil")

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.session import ElicitationFnT  # noqa: E402
from mcp.types import CallToolResult, ElicitResult, ImageContent, TextContent  # noqa: E402

from test_remote import TOKEN, jupyter_server_url  # noqa: E402, F401 - a fixture

SAFETY = 90.0
"""Seconds a whole scenario may take before it fails (a safety net under load, not a
measure of speed)."""

TOOLS = {
    "list_kernel_specs",
    "start_kernel",
    "list_kernels",
    "shutdown_kernel",
    "run_code",
    "interrupt_kernel",
    "restart_kernel",
    "read_notebook",
    "insert_cell",
    "replace_cell",
    "delete_cell",
    "execute_cell",
    "run_notebook",
}


class Server:
    """One ``kernelwire mcp`` subprocess's client session, and the kernel pids it showed."""

    def __init__(self, session: ClientSession, runtime: Path) -> None:
        self.session = session
        self.runtime = runtime
        self.pids: list[int] = []

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return await self.session.call_tool(tool, arguments)

    async def text(self, tool: str, **arguments: Any) -> str:
        """The tool's text, which must not be an error."""
        result = await self.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        return text_of(result)

    async def start(self) -> str:
        """Start a python3 kernel; its id (and its pid, remembered for the leak check)."""
        kernel_id = eval_json(await self.text("start_kernel", kernel_name="python3"))["kernel_id"]
        self.pids.append(await self.pid(kernel_id))
        return str(kernel_id)

    async def pid(self, kernel_id: str) -> int:
        kernels = eval_json(await self.text("list_kernels"))
        (kernel,) = [k for k in kernels if k["kernel_id"] == kernel_id]
        return int(kernel["pid"])

    async def run(self, kernel_id: str, code: str, timeout: float = 60) -> str:
        return await self.text("run_code", kernel_id=kernel_id, code=code, timeout=timeout)


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def eval_json(text: str) -> Any:
    import json

    return json.loads(text)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], within: float = 30.0) -> list[int]:
    """The pids still running after ``within`` seconds."""
    deadline = time.monotonic() + within
    while any(not gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if not gone(p)]


@contextlib.asynccontextmanager
async def mcp_server(
    tmp_path: Path, *options: str, elicitation: ElicitationFnT | None = None
) -> AsyncIterator[Server]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kernelwire", "mcp", *options],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
        cwd=tmp_path,
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, elicitation_callback=elicitation) as session,
    ):
        await session.initialize()
        yield Server(session, runtime)


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Callable[[Callable[[Server], Awaitable[None]]], None]]:
    """Run an async scenario against a fresh server; afterwards, no kernel it started
    may be left running (any that is, is killed and the test fails)."""
    servers: list[Server] = []

    def run(
        body: Callable[[Server], Awaitable[None]], elicitation: ElicitationFnT | None = None
    ) -> None:
        async def main() -> None:
            with anyio.fail_after(SAFETY):
                async with mcp_server(tmp_path, elicitation=elicitation) as server:
                    servers.append(server)
                    await body(server)

        anyio.run(main)

    yield run
    pids = [pid for server in servers for pid in server.pids]
    left = wait_gone(pids)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"kernel processes left running after the server exited: {left}"
    for server in servers:
        assert not list(server.runtime.iterdir()), "connection files left behind"


def test_every_tool(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        tools = (await server.session.list_tools()).tools
        assert {t.name for t in tools} == TOOLS
        for tool in tools:
            assert tool.description, tool.name
            assert tool.input_schema["type"] == "object"
        run_schema = next(t for t in tools if t.name == "run_code").input_schema
        assert set(run_schema["required"]) == {"kernel_id", "code"}

        specs = eval_json(await server.text("list_kernel_specs"))
        assert "python3" in {s["name"] for s in specs}

        kernel_id = await server.start()
        assert await server.run(kernel_id, "x = 6 * 7\nprint('hello')\nx") == "hello\nOut[1]: 42"
        error = await server.run(kernel_id, "1 / 0")
        assert "ZeroDivisionError" in error and "\x1b[" not in error
        stderr = await server.run(kernel_id, "import sys; print('oops', file=sys.stderr)")
        assert stderr == "[stderr]\noops"
        html = await server.run(kernel_id, "from IPython.display import HTML; HTML('<b>x</b>')")
        assert "text/html" in html

        assert "interrupted" in await server.text("interrupt_kernel", kernel_id=kernel_id)
        assert "42" in await server.run(kernel_id, "x")  # an idle kernel keeps its variables

        await server.text("restart_kernel", kernel_id=kernel_id)
        assert "NameError" in await server.run(kernel_id, "x")  # the namespace is new
        server.pids.append(await server.pid(kernel_id))

        await server.text("shutdown_kernel", kernel_id=kernel_id)
        assert eval_json(await server.text("list_kernels")) == []
        assert not wait_gone(server.pids)
        unknown = await server.call("run_code", kernel_id=kernel_id, code="1")
        assert unknown.is_error and "no kernel" in text_of(unknown)
        bad_spec = await server.call("start_kernel", kernel_name="no-such-kernel")
        assert bad_spec.is_error and "no-such-kernel" in text_of(bad_spec)

    scenario(body)


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_image_output_is_image_content(scenario: Callable[..., None]) -> None:
    png = tiny_png()

    async def body(server: Server) -> None:
        kernel_id = await server.start()
        code = (
            "from IPython.display import Image, display\n"
            f"print('before')\ndisplay(Image(data={png!r}))\nprint('after')"
        )
        result = await server.call("run_code", kernel_id=kernel_id, code=code)
        assert not result.is_error
        images = [c for c in result.content if isinstance(c, ImageContent)]
        assert len(images) == 1
        assert images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data) == png
        assert text_of(result) == "before\nafter"  # not the image's text/plain repr

    scenario(body)


def test_timeout_interrupts_and_the_kernel_answers_next(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        kernel_id = await server.start()
        await server.run(kernel_id, "import time; n = 0")
        for attempt in range(3):
            text = await server.run(
                kernel_id, "n += 1\nprint('started', flush=True)\ntime.sleep(600)", timeout=1
            )
            assert "started" in text
            assert "interrupted after 1 s" in text
            assert "KeyboardInterrupt" in text
            # The next call is answered at once: nothing runs behind the returned call.
            # (Its generous timeout is a safety net; had it waited, it would say so.)
            after = await server.run(kernel_id, "n", timeout=30)
            assert after.startswith("Out[") and after.endswith(f"]: {attempt + 1}"), after

    scenario(body)


def test_code_that_ignores_the_interrupt_gets_a_restarted_kernel(
    scenario: Callable[..., None],
) -> None:
    stubborn = (
        "import time\nx = 1\nwhile True:\n"
        "    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass"
    )

    async def body(server: Server) -> None:
        kernel_id = await server.start()
        text = await server.run(kernel_id, stubborn, timeout=1)
        assert "kept running: the kernel was restarted" in text
        assert "NameError" in await server.run(kernel_id, "x", timeout=30)
        server.pids.append(await server.pid(kernel_id))

    scenario(body)


def test_input_fails_at_once(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        kernel_id = await server.start()
        text = await server.run(kernel_id, "name = input('name? ')", timeout=60)
        assert "StdinNotImplementedError" in text
        assert "input() is not available" in text
        assert "interrupted" not in text  # it failed, not waited for the timeout
        assert await server.run(kernel_id, "1 + 1") == "Out[2]: 2"

    scenario(body)


def test_input_is_asked_of_a_client_that_answers_elicitation(
    scenario: Callable[..., None],
) -> None:
    asked: list[str] = []
    answers = iter(
        [
            ElicitResult(action="accept", content={"value": "Ada"}),
            ElicitResult(action="decline"),
        ]
    )

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return next(answers)

    async def body(server: Server) -> None:
        kernel_id = await server.start()
        code = "name = input('name? ')\nprint(f'hello {name!r}')"
        assert await server.run(kernel_id, code) == "hello 'Ada'"
        assert asked == ["The code being run asks for input: name? "]
        declined = await server.run(kernel_id, code)
        assert declined.splitlines()[0] == "hello ''"
        assert "was not answered by the client" in declined
        # A password prompt is never put to the client: secrets are not asked for via MCP.
        hidden = await server.run(kernel_id, "import getpass; len(getpass.getpass('key: '))")
        assert hidden.startswith("Out[3]: 0"), hidden
        assert "secrets are not asked for" in hidden
        assert len(asked) == 2

    scenario(body, elicitation=answer)


def test_killed_kernel_is_a_tool_error(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        idle = await server.start()
        busy = await server.start()
        os.kill(await server.pid(idle), signal.SIGKILL)
        result = await server.call("run_code", kernel_id=idle, code="1", timeout=60)
        assert result.is_error and "died" in text_of(result), text_of(result)

        async def kill_soon() -> None:
            await anyio.sleep(1)
            os.kill(server.pids[1], signal.SIGKILL)

        async with anyio.create_task_group() as group:
            group.start_soon(kill_soon)
            result = await server.call(
                "run_code", kernel_id=busy, code="import time; time.sleep(600)", timeout=60
            )
        assert result.is_error and "died" in text_of(result), text_of(result)
        assert "interrupted" not in text_of(result)  # found dead, not timed out

        kernels = {k["kernel_id"]: k["state"] for k in eval_json(await server.text("list_kernels"))}
        assert kernels == {idle: "dead", busy: "dead"}
        again = await server.call("interrupt_kernel", kernel_id=idle)
        assert again.is_error and "died" in text_of(again)
        await server.text("shutdown_kernel", kernel_id=idle)

    scenario(body)


def test_server_exit_leaves_no_kernel(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        for _ in range(2):
            kernel_id = await server.start()
            await server.run(kernel_id, "1")
        # Leaving the scenario closes the server's stdin; the fixture checks the pids.

    scenario(body)


def test_sigterm_shuts_the_kernels_down(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        kernel_id = await server.start()
        pid = await server.pid(kernel_id)
        server_pid = psutil.Process(pid).ppid()
        assert "kernelwire" in " ".join(psutil.Process(server_pid).cmdline())
        os.kill(server_pid, signal.SIGTERM)
        assert not await anyio.to_thread.run_sync(wait_gone, [pid, server_pid])

    scenario(body)


def test_import_kernelwire_does_not_import_mcp() -> None:
    code = "import sys, kernelwire, kernelwire.cli; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on ``port`` (not someone else who took it)."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``kernelwire mcp --http`` on a free port, listening: its URL and process (stopped
    after). A port taken by another process between our probe and the server's bind
    (seen with parallel tests) makes the server exit: it is started again on another."""
    for attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernelwire", "mcp", "--http", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
            cwd=tmp_path,
        )
        deadline = time.monotonic() + SAFETY
        while not listens_on(proc.pid, port) and proc.poll() is None:
            assert time.monotonic() < deadline, "kernelwire mcp --http did not listen"
            time.sleep(0.1)
        if proc.poll() is None:
            break
        _, stderr = proc.communicate(timeout=30)
        if b"address already in use" not in stderr.lower() or attempt == 4:
            raise AssertionError(f"kernelwire mcp --http exited: {stderr.decode()}")
    try:
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


async def listening(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the server at ``url`` accepts connections."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    while True:
        try:
            stream = await anyio.connect_tcp(parts.hostname or "", parts.port or 0)
        except OSError:
            assert proc.poll() is None, proc.communicate()
            await anyio.sleep(0.2)
        else:
            await stream.aclose()
            return


def test_http_sessions_have_their_own_kernels(
    http_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from mcp.client.streamable_http import streamable_http_client

    url, proc = http_server
    pids: list[int] = []

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Server]:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            server = Server(session, tmp_path)
            yield server
            pids.extend(server.pids)

    async def main() -> None:
        with anyio.fail_after(SAFETY):
            await listening(url, proc)
            async with connect() as first, connect() as second:
                one, two = await first.start(), await second.start()
                await first.run(one, "secret = 'first'")
                await second.run(two, "secret = 'second'")
                assert await first.run(one, "secret") == "Out[2]: 'first'"
                assert await second.run(two, "secret") == "Out[2]: 'second'"
                # Neither sees, nor can use, the other's kernel.
                assert [k["kernel_id"] for k in eval_json(await first.text("list_kernels"))] == [
                    one
                ]
                foreign = await second.call("run_code", kernel_id=one, code="secret")
                assert foreign.is_error and "no kernel" in text_of(foreign)
            # Closing a session shuts its kernels down, with the server still running.
            assert not await anyio.to_thread.run_sync(wait_gone, pids)
            async with connect() as third:
                await third.start()
            assert proc.poll() is None

    anyio.run(main)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=SAFETY)
    left = wait_gone(pids)
    assert not left, f"kernels left running: {left}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("kernel-")]


def test_interrupt_kernel_stops_a_running_call(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        kernel_id = await server.start()
        results: list[str] = []

        async def long_run() -> None:
            code = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)"
            results.append(await server.run(kernel_id, code, timeout=SAFETY - 30))

        async with anyio.create_task_group() as group:
            group.start_soon(long_run)
            await anyio.sleep(2)  # the run has begun (if not, the interrupt finds it idle)
            while not results:
                await server.text("interrupt_kernel", kernel_id=kernel_id)
                await anyio.sleep(1)
        (text,) = results
        assert "KeyboardInterrupt" in text
        assert "interrupted after" not in text  # stopped by the tool, not the timeout
        assert await server.run(kernel_id, "1 + 1") == "Out[2]: 2"

    scenario(body)


def test_without_the_sdk_the_command_says_how_to_get_it() -> None:
    code = (
        "import sys; sys.modules['mcp'] = None\n"
        "from kernelwire.cli import main; sys.exit(main(['mcp']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert "pip install 'kernelwire[mcp]'" in out.stderr


def test_notebook_tools_edit_run_and_write_the_file(
    scenario: Callable[..., None], tmp_path: Path
) -> None:
    import nbformat

    path = tmp_path / "work.ipynb"

    async def body(server: Server) -> None:
        await server.text("insert_cell", path="work.ipynb", source="# Title", cell_type="markdown")
        await server.text("insert_cell", path="work.ipynb", source="y = 2\nprint('set')")
        await server.text("insert_cell", path="work.ipynb", source="y * 21")
        await server.text("insert_cell", path="work.ipynb", source="gone", index=1)
        assert "deleted cell 1" in await server.text("delete_cell", path="work.ipynb", index=1)
        await server.text("replace_cell", path="work.ipynb", index=2, source="y * 21 + 0")
        cells = eval_json(await server.text("read_notebook", path="work.ipynb"))
        assert [c["cell_type"] for c in cells] == ["markdown", "code", "code"]
        assert cells[2]["source"] == "y * 21 + 0" and cells[2]["outputs"] == ""

        kernel_id = await server.start()
        first = await server.text("execute_cell", kernel_id=kernel_id, path="work.ipynb", index=1)
        assert first.startswith("set") and "outputs written into cell 1" in first
        second = await server.text("execute_cell", kernel_id=kernel_id, path=str(path), index=2)
        assert "Out[2]: 42" in second
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[1].outputs[0]["text"] == "set\n"
        assert nb.cells[2].outputs[0]["data"]["text/plain"] == "42"
        assert nb.cells[2].execution_count == 2
        cells = eval_json(await server.text("read_notebook", path="work.ipynb"))
        assert cells[2]["outputs"] == "42" and cells[2]["execution_count"] == 2

        not_code = await server.call(
            "execute_cell", kernel_id=kernel_id, path="work.ipynb", index=0
        )
        assert not_code.is_error and "is a markdown cell, not code" in text_of(not_code)
        no_cell = await server.call("delete_cell", path="work.ipynb", index=7)
        assert no_cell.is_error and "no cell index 7: it has 3 cells (0 to 2)" in text_of(no_cell)
        not_nb = await server.call("read_notebook", path="notes.txt")
        assert not_nb.is_error and "not a notebook" in text_of(not_nb)
        missing = await server.call("read_notebook", path="nothing.ipynb")
        assert missing.is_error and "no such notebook" in text_of(missing)

        # The whole notebook, on a kernel of its own: the session's kernel is untouched.
        await server.text("replace_cell", path="work.ipynb", index=1, source="y = 3")
        said = await server.text("run_notebook", path="work.ipynb")
        assert "ran 2 code cells" in said
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[2].outputs[0]["data"]["text/plain"] == "63"
        assert "42" in await server.run(kernel_id, "y * 21")
        await server.text("insert_cell", path="work.ipynb", source="1 / 0")
        failed = await server.call("run_notebook", path="work.ipynb")
        assert failed.is_error and "raised ZeroDivisionError" in text_of(failed)
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[3].outputs[0]["ename"] == "ZeroDivisionError"  # saved as it ran

    scenario(body)


def test_outputs_land_in_the_cell_that_ran_though_cells_move_meanwhile(
    scenario: Callable[..., None], tmp_path: Path
) -> None:
    import nbformat

    path = tmp_path / "shared.ipynb"

    async def body(server: Server) -> None:
        await server.text(
            "insert_cell", path="shared.ipynb", source="import time; time.sleep(3); 7"
        )
        kernel_id = await server.start()
        results: list[str] = []

        async def run_it() -> None:
            results.append(
                await server.text("execute_cell", kernel_id=kernel_id, path="shared.ipynb", index=0)
            )

        async with anyio.create_task_group() as group:
            group.start_soon(run_it)
            await anyio.sleep(1.0)  # while it runs, another edit puts a cell above it
            await server.text("insert_cell", path="shared.ipynb", source="'above'", index=0)
        assert "outputs written into cell 1" in results[0]
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].source == "'above'" and nb.cells[0].outputs == []
        assert nb.cells[1].outputs[0]["data"]["text/plain"] == "7"

    scenario(body)


def test_long_output_is_capped_and_the_rest_is_in_a_file(scenario: Callable[..., None]) -> None:
    async def body(server: Server) -> None:
        kernel_id = await server.start()
        text = await server.run(kernel_id, "print('x' * 50_000)")
        assert len(text) < 21_000
        assert "30,000 more characters not shown" in text
        where = text.rsplit(" is in ", 1)[1].rstrip("]")
        assert Path(where).read_text() == "x" * 50_000

    scenario(body)


@pytest.mark.timeout(400)
def test_a_hundred_timeouts_in_a_row_leave_nothing_running(tmp_path: Path) -> None:
    """Each forced timeout is interrupted before its call returns: the next call finds
    the kernel idle and answers with the count so far, every time."""

    async def main() -> None:
        with anyio.fail_after(300):
            async with mcp_server(tmp_path) as server:
                kernel_id = await server.start()
                await server.run(kernel_id, "import time; n = 0")
                try:
                    for attempt in range(100):
                        text = await server.run(kernel_id, "n += 1\ntime.sleep(600)", timeout=0.2)
                        assert "interrupted after 0.2 s" in text, (attempt, text)
                        after = await server.run(kernel_id, "n", timeout=30)
                        assert after.endswith(f"]: {attempt + 1}"), (attempt, after)
                finally:
                    pids.extend(server.pids)

    pids: list[int] = []
    anyio.run(main)
    assert not wait_gone(pids)


@pytest.mark.timeout(400)
def test_eight_http_sessions_at_once_each_see_only_their_own(
    http_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from mcp.client.streamable_http import streamable_http_client

    url, proc = http_server
    pids: list[int] = []
    seen: dict[int, list[str]] = {}

    async def agent(number: int) -> None:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            server = Server(session, tmp_path)
            kernel_id = await server.start()
            pids.extend(server.pids)
            await server.run(kernel_id, f"mine = {number}")
            listed = eval_json(await server.text("list_kernels"))
            seen[number] = [k["kernel_id"] for k in listed]
            assert await server.run(kernel_id, "mine") == f"Out[2]: {number}"
            assert seen[number] == [kernel_id]

    async def main() -> None:
        with anyio.fail_after(300):
            await listening(url, proc)
            async with anyio.create_task_group() as group:
                for number in range(8):
                    group.start_soon(agent, number)

    anyio.run(main)
    assert len(seen) == 8
    assert len({ids[0] for ids in seen.values()}) == 8  # eight kernels, one each
    assert not wait_gone(pids), "a session's kernels outlived it"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=SAFETY)


def test_an_existing_kernel_is_shared_and_left_running(fresh_kernel: Any, tmp_path: Path) -> None:
    """--existing: the kernel a person has open, usable from every session, never
    stopped or restarted by the server."""
    from kernelwire import BlockingKernelClient

    with BlockingKernelClient(fresh_kernel.connection_file) as person:
        person.execute_interactive("shared = 'from the person'", timeout=30)
    kernel_id = Path(fresh_kernel.connection_file).stem.removeprefix("kernel-")

    async def main() -> None:
        with anyio.fail_after(SAFETY):
            async with mcp_server(tmp_path, "--existing", fresh_kernel.connection_file) as server:
                (listed,) = eval_json(await server.text("list_kernels"))
                assert listed["kernel_id"] == kernel_id and listed["attached"] is True
                assert listed["state"] == "alive"
                assert await server.run(kernel_id, "shared") == "Out[2]: 'from the person'"
                refused = await server.call("shutdown_kernel", kernel_id=kernel_id)
                assert refused.is_error and "started by someone else" in text_of(refused)
                refused = await server.call("restart_kernel", kernel_id=kernel_id)
                assert refused.is_error and "does not restart it" in text_of(refused)
                text = await server.run(kernel_id, "import time; time.sleep(60)", timeout=0.5)
                assert "interrupted after 0.5 s" in text

    anyio.run(main)
    assert fresh_kernel.is_alive(), "the server stopped a kernel it did not start"
    with BlockingKernelClient(fresh_kernel.connection_file) as person:
        reply = person.execute_interactive("shared", timeout=30)
        assert reply["content"]["status"] == "ok"


def test_missing_existing_connection_file_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kernelwire", "mcp", "--existing", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert "nope.json" in done.stderr and "Traceback" not in done.stderr


def test_kernels_on_a_jupyter_server(jupyter_server_url: str, tmp_path: Path) -> None:  # noqa: F811
    """--server: kernel specs and kernels are the server's; they are deleted there when
    the MCP server exits."""
    from kernelwire import connect_server

    async def main() -> None:
        with anyio.fail_after(SAFETY):
            options = ("--server", jupyter_server_url, "--token", TOKEN)
            async with mcp_server(tmp_path, *options) as server:
                specs = eval_json(await server.text("list_kernel_specs"))
                assert "python3" in {s["name"] for s in specs}
                kernel_id = eval_json(await server.text("start_kernel"))["kernel_id"]
                with connect_server(jupyter_server_url, TOKEN) as jupyter:
                    assert kernel_id in {k["id"] for k in jupyter.list_kernels()}
                assert await server.run(kernel_id, "6 * 7") == "Out[1]: 42"
                text = await server.run(kernel_id, "import time; time.sleep(60)", timeout=1)
                assert "interrupted after 1 s" in text

    anyio.run(main)
    with connect_server(jupyter_server_url, TOKEN) as jupyter:
        deadline = time.monotonic() + 30
        while jupyter.list_kernels() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jupyter.list_kernels() == []


def test_long_runs_send_progress_notifications(
    scenario: Callable[..., None], tmp_path: Path
) -> None:
    notes: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        notes.append((value, message))

    async def body(server: Server) -> None:
        kernel_id = await server.start()
        result = await server.session.call_tool(
            "run_code",
            {"kernel_id": kernel_id, "code": "import time; time.sleep(5); 'done'"},
            progress_callback=progress,
        )
        assert text_of(result) == "Out[1]: 'done'"
        assert len(notes) >= 2, notes
        assert [v for v, _ in notes] == sorted(v for v, _ in notes)
        assert all(m is not None and m.startswith("running for") for _, m in notes), notes
        before = len(notes)
        await server.text("insert_cell", path="p.ipynb", source="import time; time.sleep(1)")
        await server.text("insert_cell", path="p.ipynb", source="time.sleep(2.5)")
        await server.text("insert_cell", path="p.ipynb", source="time.sleep(2.5)")
        await server.session.call_tool(
            "run_notebook", {"path": "p.ipynb"}, progress_callback=progress
        )
        assert any(m and "cells done" in m for _, m in notes[before:]), notes[before:]
        # A client that asks for no progress gets none, and the same answer.
        count = len(notes)
        assert await server.run(kernel_id, "import time; time.sleep(2.5); 1") == "Out[2]: 1"
        assert len(notes) == count

    scenario(body)


def test_the_server_stopping_waits_for_shutdowns_under_way() -> None:
    """A session that ended shuts its kernels down in a thread of its own; the server
    stopping (SIGTERM) right then must wait for it: the program exits next, and would
    cut the shutdown short and leave the kernel's connection file (seen in a test)."""
    from kernelwire.lifecycle.kernel import Kernel
    from kernelwire.mcp_server import KernelRegistry

    registry = KernelRegistry()
    session = object()
    kernel = registry.start(session, "python3").kernel
    assert isinstance(kernel, Kernel) and kernel.connection_file is not None
    connection_file = kernel.connection_file
    ending = threading.Thread(target=registry.shutdown_session, args=(session,))
    try:
        ending.start()
        while registry.entries(session):  # the session's kernels are taken: stopping
            time.sleep(0.001)
        registry.shutdown_all()
        assert not kernel.is_alive()
        assert not os.path.exists(connection_file)
    finally:
        ending.join(SAFETY)
        kernel.shutdown(now=True)
