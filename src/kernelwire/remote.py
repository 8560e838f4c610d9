"""Remote kernels behind a Jupyter Server or a Kernel Gateway, with the local API.

>>> server = connect_server("http://127.0.0.1:8888", token="...")      # doctest: +SKIP
>>> with server.start_kernel("python3") as kernel:                     # doctest: +SKIP
...     kernel.client().execute_interactive("print(1)")
...     kernel.run("6 * 7").text
'42'

``kernel.client()`` is the same :class:`~kernelwire.BlockingKernelClient` as for a local
kernel; only its engine differs: :class:`WebSocketEngine` moves the messages over the
server's WebSocket (either framing), reconnects a dropped socket with the same
``session_id`` so the server replays what it buffered, and drops the duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .client.blocking import BlockingKernelClient
from .client.engine import BlockingEngine
from .client.heartbeat import Heartbeat
from .client.routing import Router
from .errors import KernelDied, KernelwireError, ProtocolError
from .execution import RunsCode
from .protocol.codec import Session
from .protocol.connection import ChannelName
from .protocol.message import Message
from .protocol.websocket import WebSocketFraming
from .transports.server import (
    AuthenticationError,
    ServerConnectionError,
    ServerError,
    ServerTransport,
)

log = logging.getLogger("kernelwire.remote")

RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0)
"""Back-off between attempts to reconnect a dropped WebSocket (about 11 s in all)."""

SEEN_IDS = 65536
"""How many received message ids are remembered to drop replays after a reconnect."""


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


class WebSocketEngine(BlockingEngine):
    """The blocking engine over a Jupyter Server WebSocket (no heartbeat channel there)."""

    def __init__(
        self,
        transport: ServerTransport,
        kernel_id: str,
        session: Session,
        *,
        heartbeat: Heartbeat | None = None,
        max_unclaimed: int | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        # Not BlockingEngine.__init__: that opens ZeroMQ sockets. The waiting machinery
        # (wait_for, the pump lock, the condition) is reused as it is.
        self.server = transport
        self.kernel_id = kernel_id
        self.session = session
        self.router = Router(max_unclaimed)
        self.heartbeat = heartbeat or Heartbeat()
        self.liveness_checks = []
        self.max_message_bytes = None
        self.closed = False
        self.events: list[str] = []
        self._cond = threading.Condition()
        self._pump_lock = threading.Lock()
        self._outbox = deque()
        self._ws_lock = threading.Lock()
        self._subprotocols = subprotocols
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.reconnects = 0
        self.ws = self._open()

    def _open(self) -> ClientConnection:
        ws = self.server.open_websocket(
            f"api/kernels/{self.kernel_id}/channels",
            subprotocols=self._subprotocols,
            session_id=self.session.session_id,
        )
        self.framing = WebSocketFraming(ws.subprotocol)
        return ws

    @property
    def subprotocol(self) -> str | None:
        """The framing the server agreed to (``None``: legacy)."""
        return self.ws.subprotocol

    def has_channel(self, channel: ChannelName) -> bool:
        """Every message channel is multiplexed on the WebSocket; there is no heartbeat."""
        return channel != "hb"

    def wake(self) -> None:
        """Sends go straight to the WebSocket: there is nothing to wake."""

    def send(self, channel: ChannelName, msg: Message) -> None:
        """Send ``msg`` on ``channel`` over the WebSocket (from any thread)."""
        if self.closed:
            raise KernelwireError("the client's channels are stopped")
        frame = self.framing.encode(channel, msg)
        ws = self.ws
        try:
            ws.send(frame)
        except ConnectionClosed:
            self._reconnect(ws)
            self.ws.send(self.framing.encode(channel, msg))

    def _reconnect(self, broken: ClientConnection) -> None:
        with self._ws_lock:
            if self.ws is not broken or self.closed:
                return  # another thread reconnected already
            for delay in RECONNECT_DELAYS:
                time.sleep(delay)
                try:
                    self.ws = self._open()
                except ServerConnectionError:
                    continue
                except ServerError as exc:
                    self._die(f"the server refused to reconnect: {exc}")
                    return
                self.reconnects += 1
                log.warning("reconnected to kernel %s on %s", self.kernel_id, self.server.url)
                return
            self._die(f"lost the WebSocket to {self.server.url} and could not reconnect")

    def _die(self, why: str) -> None:
        with self._cond:
            self.router.mark_dead(KernelDied(f"kernel {self.kernel_id}: {why}"))
            self._cond.notify_all()

    def pump(self, max_wait: float | None) -> None:
        """Read what the WebSocket has (waiting up to ``max_wait``) and route it."""
        now = time.monotonic()
        with self._cond:
            self._heartbeat_tick(now)  # liveness checks (no heartbeat channel here)
        wait = self._health_wait(now)
        if max_wait is not None:
            wait = min(wait, max_wait)
        ws = self.ws
        _quick_ack(ws)
        frames: list[str | bytes] = []
        try:
            frames.append(ws.recv(timeout=wait))
            while len(frames) < 256:
                frames.append(ws.recv(timeout=0))
        except TimeoutError:
            pass
        except ConnectionClosed:
            if not self.closed:
                self._reconnect(ws)
        if frames:
            with self._cond:
                for frame in frames:
                    self._route(frame)
                self._cond.notify_all()

    def _route(self, frame: str | bytes) -> None:
        try:
            channel, msg = self.framing.decode(frame)
        except ProtocolError as exc:
            self.router.rejected += 1
            log.warning("refused a WebSocket frame from %s: %s", self.server.url, exc)
            return
        msg_id = msg["msg_id"]
        if msg_id in self._seen:
            return  # replayed by the server after a reconnect: already delivered
        self._seen.add(msg_id)
        self._seen_order.append(msg_id)
        if len(self._seen_order) > SEEN_IDS:
            self._seen.discard(self._seen_order.popleft())
        if msg["msg_type"] == "status" and channel == "iopub":
            state = msg["content"].get("execution_state")
            if state in ("restarting", "autorestarting", "dead"):
                self.events.append(state)
                log.warning("server reports kernel %s %s", self.kernel_id, state)
            if state == "dead":
                self.router.mark_dead(KernelDied(f"server reports kernel {self.kernel_id} dead"))
        self.router.dispatch(channel, msg)

    def run_locked(self, func: Any) -> Any:
        """Call ``func`` under the routing lock."""
        with self._cond:
            return func()

    def close(self) -> None:
        """Close the WebSocket; waiters get ClientClosed."""
        if self.closed:
            return
        self.closed = True
        with self._pump_lock:
            self.ws.close()
        with self._cond:
            self._cond.notify_all()


class RemoteKernel(RunsCode):
    """A kernel that lives behind a Jupyter Server; the same handle as a local one."""

    def __init__(self, server: JupyterServer, model: dict[str, Any], *, owned: bool) -> None:
        self.server = server
        self.model = model
        self.kernel_id: str = model["id"]
        self.name: str = model.get("name", "")
        self._owned = owned
        self._clients: list[BlockingKernelClient] = []
        self._run_client: BlockingKernelClient | None = None
        self._closed = False

    def client(
        self, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> BlockingKernelClient:
        """A started, ready :class:`BlockingKernelClient` over the server's WebSocket.

        ``subprotocols=[]`` asks for the legacy framing.
        """
        transport = self.server.transport

        def engine(
            channels: list[ChannelName],
            session: Session,
            heartbeat: Heartbeat,
            max_unclaimed: int | None,
        ) -> WebSocketEngine:
            return WebSocketEngine(
                transport,
                self.kernel_id,
                session,
                heartbeat=heartbeat,
                max_unclaimed=max_unclaimed,
                subprotocols=subprotocols,
            )

        client = BlockingKernelClient(engine_factory=engine, **kwargs)
        client.start_channels()
        self._clients.append(client)
        client.wait_for_ready(60)
        return client

    def info(self) -> dict[str, Any]:
        """The server's current model of this kernel (``execution_state``, ...)."""
        self.model = self.server.transport.request("GET", f"api/kernels/{self.kernel_id}")
        return self.model

    def is_alive(self) -> bool:
        """Whether the server still has this kernel and does not report it dead."""
        try:
            return self.info().get("execution_state") != "dead"
        except ServerError:
            return False

    def interrupt(self) -> None:
        """Interrupt the running code (the server signals or messages the kernel)."""
        self.server.transport.request("POST", f"api/kernels/{self.kernel_id}/interrupt")

    def restart(self) -> None:
        """Restart the kernel; clients stay connected (namespace gone)."""
        self.model = self.server.transport.request("POST", f"api/kernels/{self.kernel_id}/restart")
        for client in self._clients:
            if client.channels_running:
                client.engine.router.death = None
                client.wait_for_ready(60)

    def shutdown(self) -> None:
        """Stop the clients and delete the kernel on the server (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for client in self._clients:
            client.stop_channels()
        try:
            self.server.transport.request("DELETE", f"api/kernels/{self.kernel_id}")
        except ServerError as exc:
            log.debug("deleting kernel %s: %s", self.kernel_id, exc)

    def _runner(self) -> BlockingKernelClient:
        if self._run_client is None or not self._run_client.channels_running:
            self._run_client = self.client()
        return self._run_client

    def __enter__(self) -> RemoteKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.shutdown()
        else:
            for client in self._clients:
                client.stop_channels()

    def __repr__(self) -> str:
        return f"<RemoteKernel {self.name} {self.kernel_id} on {self.server.transport.url}>"


class JupyterServer:
    """A Jupyter Server or Kernel Gateway: its kernel specs and kernels."""

    def __init__(self, transport: ServerTransport) -> None:
        self.transport = transport

    def kernel_specs(self) -> dict[str, Any]:
        """The server's kernel specs by name."""
        answer = self.transport.request("GET", "api/kernelspecs")
        return dict(answer.get("kernelspecs", {}))

    def list_kernels(self) -> list[dict[str, Any]]:
        """The server's running kernels (their models)."""
        return list(self.transport.request("GET", "api/kernels"))

    def start_kernel(self, name: str = "python3", **body: Any) -> RemoteKernel:
        """Start a kernel (``POST /api/kernels``); leaving a ``with`` block deletes it."""
        model = self.transport.request("POST", "api/kernels", json={"name": name, **body})
        return RemoteKernel(self, model, owned=True)

    def kernel(self, kernel_id: str) -> RemoteKernel:
        """Attach to an existing kernel (not deleted when the handle is left)."""
        model = self.transport.request("GET", f"api/kernels/{kernel_id}")
        return RemoteKernel(self, model, owned=False)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.transport.close()

    def __enter__(self) -> JupyterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<JupyterServer {self.transport.url}>"


def connect_server(
    url: str, token: str | None = None, *, timeout: float = 30.0, verify: bool | str = True
) -> JupyterServer:
    """A handle on the Jupyter Server (or Kernel Gateway) at ``url``.

    Checks the server answers and accepts the token (``GET /api/kernelspecs``, which a
    Kernel Gateway allows even where it hides its kernel list):
    :class:`AuthenticationError` or :class:`ServerConnectionError` otherwise.
    """
    server = JupyterServer(ServerTransport(url, token, timeout=timeout, verify=verify))
    server.transport.request("GET", "api/kernelspecs")
    return server


__all__ = [
    "AuthenticationError",
    "JupyterServer",
    "RemoteKernel",
    "ServerConnectionError",
    "ServerError",
    "WebSocketEngine",
    "connect_server",
]
