"""A kernel's channels over a Jupyter Server WebSocket (a
:class:`~kernelwire.transports.base.Transport`).

Every channel is multiplexed on one WebSocket, in either framing
(:mod:`kernelwire.protocol.websocket`). A dropped socket is reopened with the same
``session_id``, so the server replays what it buffered meanwhile; the codec drops the
replayed messages already delivered. There is no heartbeat channel: the server
watches its kernel, and says so in IOPub statuses of its own (``dead``).

A reader thread receives frames and hands them over through a queue and a pipe, whose
read end is what a driver waits on (a poller, or an asyncio loop's reader).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from ..errors import ClientClosed, ServerConnectionError, ServerError
from ..protocol.codec import ReplayGuard
from ..protocol.connection import ChannelName
from ..protocol.message import Channel, Message
from ..protocol.websocket import WebSocketFraming
from .base import BATCH
from .server import OPEN_TIMEOUT, ServerTransport

log = logging.getLogger("kernelwire.remote")

RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0)
"""Back-off between attempts to reconnect a dropped WebSocket (about 11 s in all), after
which its kernel counts as lost (:class:`~kernelwire.errors.KernelDied`)."""

RECONNECT_OPEN_TIMEOUT = 10.0
"""Seconds one attempt to reopen the WebSocket may take at most."""

SEEN_IDS = 65536
"""How many received message ids are remembered to drop replays after a reconnect."""

MESSAGE_CHANNELS: frozenset[ChannelName] = frozenset({"shell", "iopub", "stdin", "control"})


def _quick_ack(ws: ClientConnection) -> None:
    """Ask Linux to acknowledge the next segments at once.

    Jupyter Server writes each kernel message as its own small frame without
    TCP_NODELAY, so Nagle's algorithm holds the second one until our ACK, which Linux
    delays by up to 40 ms: without this, every remote round trip costs 40 ms more. The
    mode is not sticky, hence one call per read.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            ws.socket.setsockopt(socket.IPPROTO_TCP, quickack, 1)


class WebSocketCodec:
    """Frames <-> messages in the framing the server agreed to; drops replayed ids."""

    def __init__(self, subprotocol: str | None, remember: int = SEEN_IDS) -> None:
        self.framing = WebSocketFraming(subprotocol)
        self.seen = ReplayGuard(remember)

    def encode(self, channel: ChannelName, msg: Mapping[str, Any]) -> str | bytes:
        """The frame of ``msg`` on ``channel``."""
        return self.framing.encode(channel, msg)

    def decode(self, channel: Channel, unit: str | bytes) -> tuple[Channel, Message] | None:
        """``(channel, message)`` from a frame (the frame names its channel); ``None`` for
        a message delivered already (the server replays after a reconnect)."""
        on, msg = self.framing.decode(unit)
        if not self.seen.check_and_record(msg["msg_id"].encode()):
            return None
        return on, msg

    def ping(self, payload: bytes) -> NoReturn:
        """There is no heartbeat channel on a WebSocket."""
        raise NotImplementedError("a WebSocket carries no heartbeat channel")

    def pong(self, unit: str | bytes) -> bytes:
        """There is no heartbeat channel on a WebSocket."""
        raise NotImplementedError("a WebSocket carries no heartbeat channel")


class WebSocketTransport:
    """One kernel's WebSocket on a Jupyter Server: opens it, sends, reconnects with the
    same ``session_id``, and queues what arrives for :meth:`drain`.

    A reader thread receives; when the socket drops it reopens it, one attempt at a time
    with back-off (:data:`RECONNECT_DELAYS`), and sets :attr:`lost` once the back-off is
    spent. Nobody else waits for a reconnect: :meth:`send` refuses while the socket is
    down (the engine keeps the message, in order, and tries again), and a waiter's
    timeout holds, saying why (:meth:`stalled`).
    """

    needs_iopub_join = False  # the server has been subscribed all along
    channels = MESSAGE_CHANNELS

    def __init__(
        self,
        server: ServerTransport,
        kernel_id: str,
        session_id: str,
        subprotocols: list[str] | None = None,
        open_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.session_id = session_id
        self.subprotocols = subprotocols
        self.reconnects = 0
        self.closed = False
        self.lost: str | None = None
        self.drained = True
        """Whether the last :meth:`drain` took every frame received so far."""
        # Guards which socket is current and whether it is down; never held across I/O.
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._tries = 0
        self._last_error = ""
        self._stop = threading.Event()  # close() interrupts a back-off sleep
        self._frames: deque[str | bytes] = deque()
        # A Jupyter Server 1.x (as in Enterprise Gateway 3) holds the handshake until
        # the kernel answers, so a launching kernel's first open may need longer.
        self.ws = self._open(open_timeout)
        self.codec = WebSocketCodec(self.ws.subprotocol)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._reader = threading.Thread(
            target=self._read_forever, name="kernelwire-ws-reader", daemon=True
        )
        self._reader.start()

    def _open(self, timeout: float) -> ClientConnection:
        return self.server.open_websocket(
            f"api/kernels/{self.kernel_id}/channels",
            subprotocols=self.subprotocols,
            open_timeout=timeout,
            session_id=self.session_id,
        )

    @property
    def subprotocol(self) -> str | None:
        """The framing the server agreed to (``None``: legacy)."""
        return self.ws.subprotocol

    def where(self, channel: ChannelName) -> str:
        """The kernel's WebSocket URL (every channel shares it)."""
        return f"{self.server.url}api/kernels/{self.kernel_id}/channels"

    def send(self, channel: ChannelName, unit: str | bytes) -> bool:
        """Send a frame (from any thread); False while the socket is down (the reader
        thread is reconnecting: the engine tries again)."""
        if self.closed:
            raise ClientClosed("the client's channels are stopped")
        if self.lost is not None:  # never coming back: no retrying for ever
            raise ClientClosed(f"cannot send to kernel {self.kernel_id}: {self.lost}")
        with self._lock:
            if self._down_since is not None:
                return False
            ws = self.ws
        try:
            ws.send(unit)
        except ConnectionClosed:
            self._dropped(ws)
            return False
        return True

    def _dropped(self, broken: ClientConnection) -> None:
        """Note that ``broken`` (if it is still ours) dropped."""
        with self._lock:
            if self.ws is not broken or self._down_since is not None or self.closed:
                return
            self._down_since = time.monotonic()
            self._tries = 0
        log.warning("lost the WebSocket to kernel %s on %s", self.kernel_id, self.server.url)

    def stalled(self) -> str | None:
        """Why no answer may be coming: the socket is down and reconnecting (since when,
        how many tries, the last error)."""
        since = self._down_since
        if since is None:
            return None
        return (
            f"the WebSocket to {self.server.url} dropped {time.monotonic() - since:.1f} s ago "
            f"and is not back ({self._tries} reconnect tries; last: "
            f"{self._last_error or 'none yet'})"
        )

    def _reconnect(self) -> bool:
        """Reopen the dropped socket, with back-off; False, and :attr:`lost` set, if not."""
        for delay in RECONNECT_DELAYS:
            if self._stop.wait(delay):
                return False
            self._tries += 1
            try:
                ws = self._open(RECONNECT_OPEN_TIMEOUT)
            except ServerConnectionError as exc:
                self._last_error = str(exc)
                continue
            except ServerError as exc:
                gone = (
                    " (the kernel is gone from the server: shut down, or culled by a "
                    "gateway as idle)"
                    if exc.status == 404
                    else ""
                )
                self.lost = f"the server refused to reconnect{gone}: {exc}"
                return False
            with self._lock:
                if self.closed:
                    ws.close()
                    return False
                self.ws = ws
                self._down_since = None
                self.reconnects += 1
            log.warning("reconnected to kernel %s on %s", self.kernel_id, self.server.url)
            return True
        since = self._down_since or time.monotonic()
        self.lost = (
            f"lost the WebSocket to {self.server.url} and could not reconnect "
            f"({self._tries} tries over {time.monotonic() - since:.1f} s; "
            f"last: {self._last_error})"
        )
        return False

    def _read_forever(self) -> None:
        while not self.closed:
            ws = self.ws
            _quick_ack(ws)
            try:
                frame = ws.recv()
            except ConnectionClosed:
                if self.closed:
                    return
                self._dropped(ws)
                if not self._reconnect():
                    self._wake()  # a driver reads ``lost``
                    return
                self._wake()  # a driver sends what waited meanwhile
                continue
            self._frames.append(frame)
            self._wake()

    def _wake(self) -> None:
        # A full pipe means the driver has a wake-up waiting anyway; a closed one, no driver.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def drain(self, channel: ChannelName) -> list[str | bytes]:
        """The frames received so far, of every channel (at most a batch)."""
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass
        frames = self._frames
        out: list[str | bytes] = []
        while frames and len(out) < BATCH:
            out.append(frames.popleft())
        self.drained = not frames
        if frames:
            self._wake()  # more to read: keep the pipe readable
        return out

    def waitable(self, channel: ChannelName) -> int:
        """The pipe the reader thread writes to (the same for every channel)."""
        return self._wake_r

    def event_waitables(self) -> Collection[Any]:
        """No connection events: reconnecting is this transport's own business."""
        return ()

    def dropped(self, now: float) -> list[ChannelName]:
        """Never: a dropped socket is reconnected here, and a failure sets :attr:`lost`."""
        return []

    def next_check(self) -> float | None:
        """Never: see :meth:`dropped`."""
        return None

    def reconnect(self, channel: ChannelName) -> list[ChannelName]:
        """Nothing to do: see :meth:`dropped`."""
        return []

    def check_open(self) -> None:
        """Nothing is closed under us here."""

    def close(self) -> None:
        """Close the socket and stop the reader thread (idempotent)."""
        if self.closed:
            return
        with self._lock:
            self.closed = True
        self._stop.set()
        self.ws.close()
        if self._reader is not threading.current_thread():
            self._reader.join(2)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
