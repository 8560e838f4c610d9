"""The size bound holds on every channel: an oversized message on shell, control or stdin
is refused by ZeroMQ before it is held in memory (as on IOPub), and the request it
answered fails at once with ``ReplyLost`` instead of hanging; the channel then works again.

A synthetic kernel sends the oversized messages (a real kernel would need to be told to).
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from fake_kernel import FakeKernel
from kernelwire import (
    AsyncKernelClient,
    BlockingKernelClient,
    CallbackKernelClient,
    KernelwireError,
    ReplyLost,
    requests,
)
from kernelwire.client import _engine as engine
from kernelwire.connection_file import new_connection_info
from kernelwire.protocol.message import Message
from test_faults import PeakRss

TIMEOUT = 30.0  # a request ended by its timeout, not by the lost connection, fails the test
SMALL_BOUND = 64 * 1024
BIG = "x" * (4 * SMALL_BOUND)


def oversized_once(kernel: FakeKernel, channel: str, identity: bytes, request: Message) -> None:
    """Answers ``big`` (execute), and the first ``interrupt_request``, with an oversized
    reply; asks for input with an oversized ``input_request`` for ``ask big``."""
    code = request["content"].get("code")
    first_interrupt = request["msg_type"] == "interrupt_request" and not getattr(
        kernel, "interrupted", False
    )
    if first_interrupt:
        kernel.interrupted = True  # type: ignore[attr-defined]
    if code == "big" or first_interrupt:
        kernel.reply(channel, identity, request, {"status": "ok", "padding": BIG})
        # Busy for a while, as a kernel running the next cell is: its sockets do not
        # notice meanwhile that the client's connection went away. A client that came
        # back under the same identity would be refused for good (ZeroMQ's ROUTER ignores
        # a second peer with an identity in use).
        time.sleep(1.0)
    elif code == "ask big":
        ask = kernel.message("input_request", {"prompt": BIG, "password": False}, request)
        kernel.send("stdin", identity, ask)
    else:
        kernel.normal(channel, identity, request)


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_MESSAGE_BYTES", SMALL_BOUND)


@pytest.mark.usefixtures("small_bound")
def test_blocking_client_oversized_reply_on_shell_and_control() -> None:
    with (
        FakeKernel(oversized_once) as kernel,
        BlockingKernelClient(connection_info=kernel.info) as client,
    ):
        with pytest.raises(ReplyLost, match="shell connection") as caught:
            client.execute("big", reply=True, timeout=TIMEOUT)
        assert caught.value.msg_type == "execute_request"
        assert client.execute("small", reply=True, timeout=TIMEOUT)["msg_type"] == "execute_reply"
        with pytest.raises(ReplyLost, match="control connection"):
            client.interrupt(reply=True, timeout=TIMEOUT)
        assert client.interrupt(reply=True, timeout=TIMEOUT)["msg_type"] == "interrupt_reply"


@pytest.mark.usefixtures("small_bound")
def test_blocking_client_oversized_input_request_on_stdin() -> None:
    with (
        FakeKernel(oversized_once) as kernel,
        BlockingKernelClient(connection_info=kernel.info) as client,
    ):
        pending = client.submit(requests.execute("ask big", allow_stdin=True))
        with pytest.raises(ReplyLost, match=r"stdin connection.*input"):
            pending.reply(timeout=TIMEOUT)
        assert client.execute("small", reply=True, timeout=TIMEOUT)["msg_type"] == "execute_reply"


@pytest.mark.usefixtures("small_bound")
def test_async_client_oversized_reply() -> None:
    async def main() -> str:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            with pytest.raises(ReplyLost, match="shell connection"):
                await client.execute("big", reply=True, timeout=TIMEOUT)
            reply = await client.execute("small", reply=True, timeout=TIMEOUT)
            return str(reply["msg_type"])

    with FakeKernel(oversized_once) as kernel:
        assert asyncio.run(main()) == "execute_reply"


@pytest.mark.usefixtures("small_bound")
def test_callback_client_oversized_reply() -> None:
    errors: queue.Queue[KernelwireError] = queue.Queue()
    done: queue.Queue[Message | None] = queue.Queue()
    with (
        FakeKernel(oversized_once) as kernel,
        CallbackKernelClient(connection_info=kernel.info) as client,
    ):
        client.execute_callback("big", on_done=done.put, on_error=errors.put)
        assert isinstance(errors.get(timeout=TIMEOUT), ReplyLost)
        client.execute_callback("small", on_done=done.put, on_error=errors.put)
        reply = done.get(timeout=TIMEOUT)
        assert reply is not None and reply["msg_type"] == "execute_reply"
        assert errors.empty()


# A peer in its own process, so that the 300 MB it sends is not counted in our memory.
PEER = """
import json, sys
import zmq
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import load_connection_info

info = load_connection_info(sys.argv[1])
session = Session(info.key_bytes, check_replay=False)
shell = zmq.Context.instance().socket(zmq.ROUTER)
shell.linger = 0
shell.bind(info.url("shell"))
print("ready", flush=True)
huge = "x" * (300 * 1024 * 1024)
while True:
    identity, *frames = shell.recv_multipart()
    _, request = session.decode(frames)
    content = {"status": "ok"}
    if request["content"].get("code") == "huge":
        content["padding"] = huge
    reply = session.message("execute_reply", content, parent=request)
    shell.send_multipart([identity, *session.encode(reply)])
"""


@pytest.fixture
def huge_peer() -> Iterator[dict[str, object]]:
    info = new_connection_info().to_dict()
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, json.dumps(info)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield info
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_300_mb_reply_on_shell_is_refused_before_it_is_held(
    huge_peer: dict[str, object],
) -> None:
    """With the default bound (128 MiB), a 300 MB reply costs next to no memory: ZeroMQ
    refuses it from its size field. Before, the client read it whole (+600 MB)."""
    client = BlockingKernelClient(connection_info=huge_peer)
    client.start_channels(iopub=False, stdin=False, control=False, hb=False)
    try:
        with PeakRss() as memory, pytest.raises(ReplyLost, match="shell connection"):
            client.execute("huge", allow_stdin=False, reply=True, timeout=TIMEOUT)
        assert memory.peak - memory.base < 64, (memory.base, memory.peak)
        reply = client.execute("small", allow_stdin=False, reply=True, timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
