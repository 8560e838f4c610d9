"""A tiny kernel made of raw pyzmq sockets, for fault injection and hostile input.

It runs on threads of the test process and binds the five channels of a fresh
connection info: it welcomes IOPub subscribers (protocol 5.5), echoes heartbeats, and
hands each request to ``answer(kernel, channel, identity, request)``. The default
answer is what a kernel does (busy, the matching ``*_reply``, idle); tests pass their
own to send what no real kernel would. Never a stand-in for a real kernel where one
can produce the input.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from kernelwire.connection_file import new_connection_info
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import ConnectionInfo
from kernelwire.protocol.message import Message

Answer = Callable[["FakeKernel", str, bytes, Message], None]
_ROUTED = ("shell", "control", "stdin", "hb")


def reply_type(request: Message) -> str:
    """The reply type that answers ``request`` (``execute_request`` -> ``execute_reply``)."""
    return request["msg_type"].removesuffix("_request") + "_reply"


class FakeKernel:
    """A synthetic kernel on two threads (requests, heartbeat); use it as a context
    manager (it stops on exit)."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or FakeKernel.normal
        self.requests: list[tuple[str, Message]] = []
        self.subscriptions: list[bytes] = []
        """The IOPub topics subscribed to, in order (each client adds its own)."""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        for attempt in range(5):  # free ports may be taken by a parallel test meanwhile
            self.info: ConnectionInfo = new_connection_info()
            try:
                self._bind()
                break
            except zmq.ZMQError as exc:
                self._close_sockets()
                if exc.errno != errno.EADDRINUSE or attempt == 4:
                    raise
        self.session = Session(self.info.key_bytes, check_replay=False)
        self._thread = threading.Thread(target=self._run, name="fake-kernel", daemon=True)
        self._thread.start()
        # The heartbeat answers on its own thread, as a kernel's does: a test's flood on
        # the other thread must not look like a dead kernel.
        self._hb_thread = threading.Thread(target=self._echo, name="fake-hb", daemon=True)
        self._hb_thread.start()

    def _bind(self) -> None:
        context = zmq.Context.instance()
        self.sockets = {}
        for channel in _ROUTED:
            sock = self.sockets[channel] = context.socket(zmq.ROUTER)
            sock.linger = 0
            sock.bind(self.info.url(channel))  # type: ignore[arg-type]
        iopub = self.sockets["iopub"] = context.socket(zmq.XPUB)
        iopub.linger = 0
        iopub.sndhwm = 0  # a test's flood is never dropped here
        iopub.bind(self.info.url("iopub"))

    # -- what an answer uses -------------------------------------------------------
    def message(
        self, msg_type: str, content: Mapping[str, Any] | None = None, parent: Any = None
    ) -> Message:
        """A message of this kernel's session; ``parent`` is the request it answers
        (or any header dict, even an invalid one)."""
        msg = self.session.message(msg_type, content)
        if parent is not None:
            msg["parent_header"] = dict(parent.get("header", parent))
        return msg

    def send(self, channel: str, identity: bytes, msg: Message) -> list[bytes]:
        """Send ``msg`` to the client ``identity`` on ``channel``; returns the frames."""
        frames = [bytes(f) for f in self.session.encode(msg)]
        self.sockets[channel].send_multipart([identity, *frames])
        return frames

    def send_frames(self, channel: str, identity: bytes, frames: list[bytes]) -> None:
        """Send raw frames (e.g. a replay of earlier ones) to ``identity``."""
        self.sockets[channel].send_multipart([identity, *frames])

    def publish(self, msg: Message) -> list[bytes]:
        """Publish ``msg`` on IOPub; returns the frames."""
        frames = [bytes(f) for f in self.session.encode(msg)]
        self.sockets["iopub"].send_multipart(frames)
        return frames

    def status(self, request: Message, state: str) -> None:
        """Publish ``status: state`` for ``request``."""
        self.publish(self.message("status", {"execution_state": state}, request))

    def reply(
        self,
        channel: str,
        identity: bytes,
        request: Message,
        content: Mapping[str, Any] | None = None,
        msg_type: str | None = None,
    ) -> list[bytes]:
        """Send the reply to ``request`` (its matching type unless ``msg_type``)."""
        msg = self.message(msg_type or reply_type(request), content or {"status": "ok"}, request)
        return self.send(channel, identity, msg)

    def normal(self, channel: str, identity: bytes, request: Message) -> None:
        """What a kernel does: busy, the reply, idle."""
        self.status(request, "busy")
        self.reply(channel, identity, request)
        self.status(request, "idle")

    # -- the thread ----------------------------------------------------------------
    def _echo(self) -> None:
        hb = self.sockets["hb"]
        try:
            while not self._stop.is_set():
                if hb.poll(20):
                    hb.send_multipart(hb.recv_multipart())
        except BaseException as exc:  # a test reads it: the fake must not fail silently
            self.error = exc

    def _run(self) -> None:
        poller = zmq.Poller()
        for name, sock in self.sockets.items():
            if name != "hb":
                poller.register(sock, zmq.POLLIN)
        names = {sock: name for name, sock in self.sockets.items()}
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(20):
                    self._handle(names[sock], sock.recv_multipart())
        except BaseException as exc:  # a test reads it: the fake must not fail silently
            self.error = exc

    def _handle(self, channel: str, frames: list[bytes]) -> None:
        if channel == "iopub":
            if frames[0][:1] == b"\x01":  # a subscription: welcome it (protocol 5.5)
                self.subscriptions.append(frames[0][1:])
                welcome = self.message("iopub_welcome", {"subscription": frames[0][1:].decode()})
                self.sockets["iopub"].send_multipart([frames[0][1:], *self.session.encode(welcome)])
            return
        identity, rest = frames[0], frames[1:]
        _, request = self.session.decode(rest)
        self.requests.append((channel, request))
        if channel != "stdin":
            self.answer(self, channel, identity, request)

    def close(self) -> None:
        """Stop the thread and close the sockets."""
        self._stop.set()
        self._thread.join(10)
        self._hb_thread.join(10)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(zmq.ZMQError):
                sock.close(linger=0)

    def __enter__(self) -> FakeKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.error is not None and exc[0] is None:
            raise AssertionError(f"the fake kernel failed: {self.error!r}") from self.error
