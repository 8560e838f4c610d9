"""``kernelwire mcp`` beside datalayer's jupyter-mcp-server, on one Jupyter Server.

Both MCP servers are started over stdio, as an MCP client starts them, and driven by
the SDK's own client; both run their code on kernels of the same local Jupyter Server
(JupyterLab, which jupyter-mcp-server needs for its notebook documents). The call timed
is the one both have: run ``pass`` on a kernel and return (jupyter-mcp-server's
``execute_code``, kernelwire's ``run_code``). Calls alternate, so machine noise hits
both alike. jupyter-mcp-server waits for the run's end by polling, every second by
default (``progress_interval`` 5, a fifth of it capped at 1 s); its second row passes
``progress_interval=1``, its smallest whole number, which polls every 0.2 s. The last
row is ``kernelwire mcp`` on a local kernel (no server between).

jupyter-mcp-server pins its own MCP SDK and Jupyter stack, so it lives in a virtual
environment of its own, made with ``uv`` on first use (``--venv`` says where):

    python bench/mcp_vs_jupyter_mcp_server.py [--n 30] [--venv DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from _common import table

THEIRS = "jupyter-mcp-server==2.2.4"
DEFAULT_VENV = Path.home() / ".cache" / "kernelwire-bench" / "jupyter-mcp-server"


def ensure_venv(venv: Path) -> Path:
    """The venv's ``bin`` folder, with jupyter-mcp-server and JupyterLab installed."""
    bin_dir = venv / "bin"
    if not (bin_dir / "jupyter-mcp-server").exists():
        uv = shutil.which("uv")
        if uv is None:
            sys.exit("this benchmark needs uv to make jupyter-mcp-server's environment")
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(bin_dir / "python"), THEIRS, "jupyterlab"],
            check=True,
        )
    return bin_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(url: str, token: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the Jupyter Server exited with code {proc.returncode}")
        request = urllib.request.Request(f"{url}/api", headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("the Jupyter Server did not answer within 120 s")


@asynccontextmanager
async def session_of(command: str, args: list[str], cwd: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command, args=args, cwd=cwd)
    # jupyter-mcp-server logs every call at INFO on stderr: kept out of the table.
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def kernelwire_runner(session: ClientSession) -> Callable[[str], Awaitable[str]]:
    started = await session.call_tool("start_kernel", {})
    kernel_id = json.loads(text_of(started))["kernel_id"]

    async def run(code: str) -> str:
        return text_of(await session.call_tool("run_code", {"kernel_id": kernel_id, "code": code}))

    return run


async def main(n: int, venv: Path) -> None:
    bin_dir = ensure_venv(venv)
    work = Path(tempfile.mkdtemp(prefix="kernelwire-bench-mcp-vs-"))
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    server_args = [
        str(bin_dir / "jupyter"),
        "lab",
        "--no-browser",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
    ]
    if os.geteuid() == 0:
        server_args.append("--allow-root")
    server = subprocess.Popen(server_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: dict[str, list[float]] = {
        "jupyter-mcp-server execute_code": [],
        "  the same, progress_interval=1": [],
        "kernelwire mcp --server run_code": [],
        "kernelwire mcp (local) run_code": [],
    }
    try:
        wait_listening(url, token, server)
        theirs_args = ["start", "--transport", "stdio", "--jupyter-url", url]
        async with (
            session_of(
                str(bin_dir / "jupyter-mcp-server"), [*theirs_args, "--jupyter-token", token], work
            ) as theirs,
            session_of(
                sys.executable,
                ["-m", "kernelwire", "mcp", "--server", url, "--token", token],
                work,
            ) as ours_remote,
            session_of(sys.executable, ["-m", "kernelwire", "mcp"], work) as ours_local,
        ):

            async def their_run(code: str) -> str:
                return text_of(await theirs.call_tool("execute_code", {"code": code}))

            async def their_run_polling_faster(code: str) -> str:
                arguments = {"code": code, "progress_interval": 1}
                return text_of(await theirs.call_tool("execute_code", arguments))

            runners = {
                "jupyter-mcp-server execute_code": their_run,
                "  the same, progress_interval=1": their_run_polling_faster,
                "kernelwire mcp --server run_code": await kernelwire_runner(ours_remote),
                "kernelwire mcp (local) run_code": await kernelwire_runner(ours_local),
            }
            for name, runner in runners.items():  # each must really run code
                answer = await runner("6 * 7")
                assert "42" in answer, f"{name} answered {answer!r}"
            for i in range(n + 3):
                for name, runner in runners.items():
                    begin = time.perf_counter()
                    await runner("pass")
                    if i >= 3:  # warm-up rounds are not counted
                        rows[name].append(time.perf_counter() - begin)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    version = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('jupyter-mcp-server'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"jupyter-mcp-server {version}; a `pass` run per tool call over stdio, one Jupyter Server"
    )
    table(rows, "ms", 1000.0)
    ours = statistics.median(rows["kernelwire mcp --server run_code"])
    for name, label in (
        ("jupyter-mcp-server execute_code", "jupyter-mcp-server as it comes"),
        ("  the same, progress_interval=1", "jupyter-mcp-server with progress_interval=1"),
    ):
        ratio = statistics.median(rows[name]) / ours
        print(f"=> through the same server, kernelwire is {ratio:.1f}x faster than {label}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="timed calls per server")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="jupyter-mcp-server's venv")
    args = parser.parse_args()
    anyio.run(main, args.n, args.venv)
