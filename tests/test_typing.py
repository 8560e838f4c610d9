"""What a type checker sees of the clients' request methods and of the transports (mypy
runs on a snippet; no kernel starts).

``reply=`` changes what a request method returns: the msg_id by default, the reply with
``reply=True`` (an awaitable of it on the asyncio client). Users' code is checked
against these types, so they are tested as the behaviour is.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

import kernelwire
from kernelwire.client.base import KernelClientBase

mypy_api = pytest.importorskip("mypy.api")

# The arguments each request method needs besides ``reply`` and ``timeout``.
REQUIRED_ARGS = {
    "execute": '"1 + 1"',
    "complete": '"pri"',
    "inspect": '"print"',
    "history": "",
    "kernel_info": "",
    "comm_info": "",
    "is_complete": '"for"',
    "shutdown": "",
    "interrupt": "",
    "debug_request": '{"command": "threads"}',
    "create_subshell": "",
    "list_subshell": "",
    "delete_subshell": '"subshell-id"',
}


def request_methods() -> set[str]:
    """The public methods of every client that take ``reply=``."""
    return {
        name
        for name, value in vars(KernelClientBase).items()
        if not name.startswith("_")
        and callable(value)
        and "reply" in inspect.signature(value).parameters
    }


def snippet() -> str:
    lines = [
        "from collections.abc import Coroutine",
        "from typing import Any",
        "from typing_extensions import assert_type",
        "from kernelwire import AsyncKernelClient, BlockingKernelClient, CallbackKernelClient",
        "from kernelwire.protocol.message import Message",
        "",
        "async def check(b: BlockingKernelClient, a: AsyncKernelClient,",
        "                cb: CallbackKernelClient, flag: bool) -> None:",
    ]
    for name, args in sorted(REQUIRED_ARGS.items()):
        comma = ", " if args else ""
        lines += [
            f"    assert_type(b.{name}({args}), str)",
            f"    assert_type(b.{name}({args}{comma}reply=False), str)",
            f"    assert_type(b.{name}({args}{comma}reply=True), Message)",
            f"    assert_type(b.{name}({args}{comma}reply=flag), str | Message)",
            f"    assert_type(cb.{name}({args}{comma}reply=True, timeout=5), Message)",
            f"    assert_type(a.{name}({args}), str)",
            f"    assert_type(a.{name}({args}{comma}reply=True), Coroutine[Any, Any, Message])",
            f"    assert_type(await a.{name}({args}{comma}reply=True, timeout=5), Message)",
            f"    assert_type(a.{name}({args}{comma}reply=flag),"
            " str | Coroutine[Any, Any, Message])",
        ]
    for client in ("a", "b"):
        lines += [
            f'    assert_type({client}.comm_open("target"), str)',
            f'    assert_type({client}.comm_msg("comm-id", {{}}), str)',
            f'    assert_type({client}.comm_close("comm-id"), str)',
        ]
    # A transport moves its own unit, which its codec encodes and decodes. (Not the
    # WebSocket one here: checking websockets' code would double mypy's time.)
    lines += [
        "",
        "from kernelwire.transports import Transport, ZmqTransport",
        "",
        "def transports(z: ZmqTransport) -> None:",
        "    multipart: Transport[list[bytes]] = z",
    ]
    return "\n".join(lines) + "\n"


def test_every_request_method_is_in_the_snippet() -> None:
    assert request_methods() == set(REQUIRED_ARGS)


def test_reply_decides_the_return_type_of_every_request_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "uses_clients.py"
    source.write_text(snippet(), encoding="utf-8")
    # mypy finds kernelwire where this process imported it from (the code under test),
    # and reads no project configuration: the snippet is checked as a user's code is.
    src = str(Path(kernelwire.__file__).parent.parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.chdir(tmp_path)
    # (the snippet looks at coroutines it does not await, on purpose)
    options = ["--strict", "--disable-error-code=unused-coroutine", "--no-incremental"]
    stdout, stderr, status = mypy_api.run([*options, "--cache-dir", os.devnull, str(source)])
    assert (status, stderr) == (0, ""), stdout
