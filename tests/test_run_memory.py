"""run() with max_output_chars holds about the cap: each IOPub message goes to the
collector as it is read, and output past the cap is dropped then, never queued.

A synthetic kernel (raw pyzmq) answers an execute with a burst of large stream messages,
signed before the first is sent, so that they reach the client faster than it can read
them: a client that queued the request's messages before handing them over would hold
many at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from kernelwire import AsyncKernelClient, BlockingKernelClient
from kernelwire.client import _pending as pending
from kernelwire.connection_file import new_connection_info
from kernelwire.execution import run, run_async
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import ConnectionInfo
from kernelwire.protocol.message import Channel, Message
from kernelwire.transports.zmq import RECV_BATCH_BYTES

COUNT = 300
SIZE = 64 * 1024
CAP = 10_000


class FloodKernel(threading.Thread):
    """Answers ``kernel_info_request`` and, for an ``execute_request``, publishes ``count``
    stream messages of ``size`` characters, then the reply and ``idle``.

    With ``trickle``, the reply goes first and the stream messages follow one every
    ``trickle`` seconds (a large output still being read when the reply is in).
    """

    def __init__(
        self, info: ConnectionInfo, count: int = COUNT, size: int = SIZE, trickle: float = 0.0
    ) -> None:
        super().__init__(daemon=True)
        self.count, self.size, self.trickle = count, size, trickle
        self.session = Session(info.key_bytes, check_replay=False)
        context = zmq.Context.instance()
        self.shell = context.socket(zmq.ROUTER)
        self.iopub = context.socket(zmq.PUB)
        for sock, channel in ((self.shell, "shell"), (self.iopub, "iopub")):
            sock.linger = 0
            sock.bind(info.url(channel))  # type: ignore[arg-type]
        self.iopub.sndhwm = 0  # the burst is the point: ZeroMQ must not drop it
        self._finished = threading.Event()

    def _publish(self, msg_type: str, content: dict[str, Any], parent: Message) -> None:
        self.iopub.send_multipart(
            self.session.encode(self.session.message(msg_type, content, parent=parent))
        )

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.shell, zmq.POLLIN)
        while not self._finished.is_set():
            if not poller.poll(50):
                continue
            identity, *frames = self.shell.recv_multipart()
            request = self.session.decode(frames)[1]
            self._publish("status", {"execution_state": "busy"}, request)
            if request["msg_type"] == "execute_request" and self.trickle:
                self._reply(identity, request, "execute_reply", {"status": "ok"})
                for _ in range(self.count):
                    time.sleep(self.trickle)
                    self._publish("stream", {"name": "stdout", "text": "x" * self.size}, request)
                self._publish("status", {"execution_state": "idle"}, request)
                continue
            if request["msg_type"] == "execute_request":
                burst = [
                    self.session.encode(
                        self.session.message(
                            "stream", {"name": "stdout", "text": "x" * self.size}, parent=request
                        )
                    )
                    for _ in range(self.count)
                ]
                for frames_ in burst:
                    self.iopub.send_multipart(frames_)
                reply_type, content = "execute_reply", {"status": "ok", "execution_count": 1}
            else:
                reply_type, content = "kernel_info_reply", {"status": "ok"}
            self._reply(identity, request, reply_type, content)
            self._publish("status", {"execution_state": "idle"}, request)

    def _reply(
        self, identity: bytes, request: Message, reply_type: str, content: dict[str, Any]
    ) -> None:
        reply = self.session.message(reply_type, content, parent=request)
        self.shell.send_multipart(self.session.encode(reply, [identity]))

    def stop(self) -> None:
        self._finished.set()
        self.join(10)
        self.shell.close(0)
        self.iopub.close(0)


@pytest.fixture
def flood_kernel() -> Iterator[ConnectionInfo]:
    info = new_connection_info()
    kernel = FloodKernel(info)
    kernel.start()
    try:
        yield info
    finally:
        kernel.stop()


class Held:
    """Watches a client's router: the most IOPub messages a request held at once."""

    def __init__(self, client: BlockingKernelClient | AsyncKernelClient) -> None:
        self.router = client.engine.router
        self.most = 0
        self.router.listeners.append(self._look)

    def _look(self, channel: Channel, msg: Message) -> None:
        for state in self.router.pending.values():
            held = sum(1 for ch, _ in state.events if ch == "iopub")
            self.most = max(self.most, held)


def check(result: Any, held: Held) -> None:
    assert result.status == "ok"
    assert len(result.stdout) == CAP
    assert f"{COUNT * SIZE - CAP} more characters not kept" in result.stderr
    assert held.most == 0, f"the request held {held.most} IOPub messages at once"


def test_run_with_a_cap_drops_output_as_it_arrives(flood_kernel: ConnectionInfo) -> None:
    with BlockingKernelClient(connection_info=flood_kernel) as client:
        held = Held(client)
        check(run(client, "flood", max_output_chars=CAP, timeout=60), held)


def test_asyncio_run_with_a_cap_drops_output_as_it_arrives(flood_kernel: ConnectionInfo) -> None:
    async def main() -> None:
        async with AsyncKernelClient(connection_info=flood_kernel) as client:
            held = Held(client)
            check(await run_async(client, "flood", max_output_chars=CAP, timeout=60), held)

    asyncio.run(main())


BIG = 1024 * 1024


def test_a_read_holds_a_bounded_number_of_bytes() -> None:
    """The reader takes waiting messages in batches of about RECV_BATCH_BYTES, not of 256
    messages: a batch is held whole until routed (256 MiB at once on 1 MiB chunks)."""
    info = new_connection_info()
    kernel = FloodKernel(info, count=40, size=BIG)
    kernel.start()
    try:
        with BlockingKernelClient(connection_info=info) as client:
            transport = client.engine.transport
            drain, largest = transport.drain, [0]

            def measured(channel: Any, *args: Any) -> list[list[bytes]]:
                batch = drain(channel, *args)
                largest[0] = max(largest[0], sum(len(f) for m in batch for f in m))
                return batch

            transport.drain = measured  # type: ignore[method-assign]
            result = run(client, "flood", max_output_chars=CAP, timeout=60)
    finally:
        kernel.stop()
    assert result.status == "ok" and len(result.stdout) == CAP
    assert largest[0] <= RECV_BATCH_BYTES + BIG + 4096, f"one read held {largest[0]} bytes"


def test_output_still_arriving_after_the_reply_is_not_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait for ``idle`` after the reply counts from the request's last IOPub message:
    a stream that is still coming in is not cut off as "incomplete"."""
    monkeypatch.setattr(pending, "IDLE_GRACE", 0.3)
    info = new_connection_info()
    kernel = FloodKernel(info, count=12, size=10, trickle=0.1)
    kernel.start()
    try:
        with BlockingKernelClient(connection_info=info) as client:
            result = run(client, "trickle", timeout=60)
    finally:
        kernel.stop()
    assert not result.incomplete
    assert result.stdout == "x" * 120
