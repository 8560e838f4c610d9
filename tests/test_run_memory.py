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
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from kernelwire import AsyncKernelClient, BlockingKernelClient
from kernelwire.execution import run, run_async
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import ConnectionInfo, new_connection_info
from kernelwire.protocol.message import Channel, Message

COUNT = 300
SIZE = 64 * 1024
CAP = 10_000


class FloodKernel(threading.Thread):
    """Answers ``kernel_info_request`` and, for an ``execute_request``, publishes COUNT
    stream messages of SIZE characters, then the reply and ``idle``."""

    def __init__(self, info: ConnectionInfo) -> None:
        super().__init__(daemon=True)
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
            if request["msg_type"] == "execute_request":
                burst = [
                    self.session.encode(
                        self.session.message(
                            "stream", {"name": "stdout", "text": "x" * SIZE}, parent=request
                        )
                    )
                    for _ in range(COUNT)
                ]
                for frames_ in burst:
                    self.iopub.send_multipart(frames_)
                reply_type, content = "execute_reply", {"status": "ok", "execution_count": 1}
            else:
                reply_type, content = "kernel_info_reply", {"status": "ok"}
            reply = self.session.message(reply_type, content, parent=request)
            self.shell.send_multipart(self.session.encode(reply, [identity]))
            self._publish("status", {"execution_state": "idle"}, request)

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
