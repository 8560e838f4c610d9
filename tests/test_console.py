"""``kernelwire console`` driven in a real pseudo-terminal (pexpect), on a real ipykernel."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from test_remote import TOKEN, jupyter_server_url  # noqa: F401 - a fixture, used by name

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("prompt_toolkit")


@contextlib.contextmanager
def spawned(*args: str, **env: str) -> Iterator[pexpect.spawn]:
    """``kernelwire console ARGS`` in a pseudo-terminal, killed if the test leaves it."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "kernelwire.cli", "console", *args],
        # no cursor-position queries, which nobody here would answer
        env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", **env},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    try:
        yield child
    finally:
        if child.isalive():
            child.terminate(force=True)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[pexpect.spawn]:
    runtime = str(tmp_path / "runtime")
    with spawned("--history", str(tmp_path / "history"), JUPYTER_RUNTIME_DIR=runtime) as child:
        yield child


def leave(child: pexpect.spawn) -> None:
    """Ctrl-D at an empty prompt: the console ends, with status 0."""
    child.send("\x04")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# What the test waits for is never in the code typed: prompt_toolkit echoes the code,
# and a key sent on seeing the echo would reach the prompt, not the running code.
def prompt(child: pexpect.spawn, n: int) -> None:
    # prompt_toolkit draws the prompt's trailing space as a cursor move
    child.expect_exact(f"In [{n}]:")


def test_console_completes_continues_blocks_answers_input_and_interrupts(
    console: pexpect.spawn, tmp_path: Path
) -> None:
    """Issue 13's console: Tab completes from the kernel, Enter continues a block the
    kernel calls incomplete, ``input()`` is answered from the terminal, ``name?``
    inspects, Ctrl-C interrupts running code, Ctrl-D leaves and shuts the kernel down."""
    console.expect_exact("kernelwire console on a new python3 kernel")
    prompt(console, 1)
    console.send("import collections, os; os.getpid()\r")
    console.expect(r"Out\[1\]: (\d+)")
    kernel_pid = int(console.match.group(1))
    prompt(console, 2)
    console.send("collections.OrderedD\t")  # completed by the kernel's complete_reply
    console.send("\r")
    console.expect_exact("Out[2]: collections.OrderedDict")
    prompt(console, 3)
    console.send("for i in range(2):\r")  # incomplete: a new, indented line
    console.send("print('row', i * 10)\r")
    console.send("\r")  # the empty last line runs the block
    console.expect_exact("row 0")
    console.expect_exact("row 10")
    prompt(console, 4)
    console.send("name = input('wh' + 'o? ')\r")
    console.expect_exact("who? ")
    console.send("ada\r")
    prompt(console, 5)
    console.send("print(name.upper())\r")
    console.expect_exact("ADA")
    prompt(console, 6)
    console.send("len?\r")
    console.expect_exact("Return the number of items in a container.")
    prompt(console, 6)
    console.send("import time; print('sl' + 'eeping', flush=True); time.sleep(300)\r")
    console.expect_exact("sleeping")
    console.send("\x03")  # Ctrl-C, as a terminal sends it
    console.expect_exact("KeyboardInterrupt")
    prompt(console, 7)
    leave(console)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(kernel_pid) and time.monotonic() < deadline:
        if psutil.Process(kernel_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        assert not psutil.pid_exists(kernel_pid), "the kernel outlived the console"
    assert list((tmp_path / "runtime").glob("*.json")) == []
    assert re.search(r"name = input", (tmp_path / "history").read_text())


def test_console_needs_a_terminal() -> None:
    """Piped, the console says what it needs in one line (exit 2) instead of failing
    inside prompt_toolkit."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "kernelwire.cli", "console"],
        input="1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "kernelwire: console: needs a terminal (use kernelwire run for piped code)"
    ]


def test_console_on_an_existing_kernel_leaves_it_running(tmp_path: Path) -> None:
    """``console --existing`` works on someone else's kernel: what it defines stays,
    and Ctrl-D leaves the kernel running."""
    from kernelwire import run_kernel_in_process

    with run_kernel_in_process(tmp_path / "kernel.json") as kernel:
        with spawned("--existing", kernel.connection_file, "--history", "") as child:
            child.expect_exact(f"kernelwire console on {kernel.connection_file}")
            child.expect(r"In \[(\d+)\]:")
            first = int(child.match.group(1))
            child.send("left_here = 6 * 7\r")
            prompt(child, first + 1)  # the next prompt, not the first one redrawn
            leave(child)
        assert kernel.is_alive()
        from kernelwire import BlockingKernelClient

        with BlockingKernelClient(kernel.connection_file) as client:
            reply = client.execute("assert left_here == 42", reply=True, timeout=60)
        assert reply["content"]["status"] == "ok"


def test_console_on_a_servers_kernel_deletes_it_when_leaving(
    jupyter_server_url: str,  # noqa: F811
) -> None:
    """``console --server URL``: the code runs on a kernel of the Jupyter Server, which
    is deleted when the console ends."""
    from kernelwire import connect_server

    server_args = ("--server", jupyter_server_url, "--token", TOKEN)
    with spawned(*server_args, "--history", "") as child:
        prompt(child, 1)
        with connect_server(jupyter_server_url, TOKEN) as server:
            assert len(server.list_kernels()) == 1
        child.send("6 * 7\r")
        child.expect_exact("Out[1]: 42")
        prompt(child, 2)
        leave(child)
    with connect_server(jupyter_server_url, TOKEN) as server:
        assert server.list_kernels() == []
