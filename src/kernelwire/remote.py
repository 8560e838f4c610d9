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

from .client.async_client import AsyncKernelClient
from .client.blocking import BlockingKernelClient
from .client.engine import AsyncEngine, BlockingEngine
from .client.heartbeat import Heartbeat
from .client.routing import Router
from .errors import KernelDied, KernelRestarted, KernelwireError, ProtocolError
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

WAIT_SLICE = 0.1
"""Seconds a blocking waiter spends at most in one WebSocket read. A read cannot be woken
(there is no wake pipe as on ZeroMQ), so this bounds how late a waiter sees its request
failed from another thread, e.g. by a restart."""

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


class WebSocketLink:
    """One kernel's WebSocket: opens it, sends, reconnects with the same ``session_id``,
    decodes frames and drops the messages a reconnect replays. Shared by both engines.
    """

    def __init__(
        self,
        transport: ServerTransport,
        kernel_id: str,
        session: Session,
        subprotocols: list[str] | None,
    ) -> None:
        self.server = transport
        self.kernel_id = kernel_id
        self.session = session
        self.subprotocols = subprotocols
        self.events: list[str] = []
        self.reconnects = 0
        self.closed = False
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.ws = self._open()

    def _open(self) -> ClientConnection:
        ws = self.server.open_websocket(
            f"api/kernels/{self.kernel_id}/channels",
            subprotocols=self.subprotocols,
            session_id=self.session.session_id,
        )
        self.framing = WebSocketFraming(ws.subprotocol)
        return ws

    def send(self, channel: ChannelName, msg: Message) -> None:
        """Send ``msg`` on ``channel`` (thread-safe); reconnects once if the socket dropped."""
        if self.closed:
            raise KernelwireError("the client's channels are stopped")
        ws = self.ws
        try:
            ws.send(self.framing.encode(channel, msg))
        except ConnectionClosed:
            if self.reconnect(ws):
                self.ws.send(self.framing.encode(channel, msg))

    def reconnect(self, broken: ClientConnection) -> bool:
        """Replace a dropped socket (with back-off); False, and ``failure`` set, if we cannot."""
        with self._lock:
            if self.ws is not broken or self.closed:
                return not self.closed  # another thread reconnected already
            for delay in RECONNECT_DELAYS:
                time.sleep(delay)
                try:
                    self.ws = self._open()
                except ServerConnectionError:
                    continue
                except ServerError as exc:
                    self.failure = f"the server refused to reconnect: {exc}"
                    return False
                self.reconnects += 1
                log.warning("reconnected to kernel %s on %s", self.kernel_id, self.server.url)
                return True
            self.failure = f"lost the WebSocket to {self.server.url} and could not reconnect"
            return False

    def receive(self, wait: float) -> list[str | bytes]:
        """Frames that arrive within ``wait`` seconds (then whatever is already there)."""
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
                self.reconnect(ws)
        return frames

    def route(self, frame: str | bytes, router: Router) -> None:
        """Decode ``frame`` and hand it to ``router`` unless it is a replayed duplicate."""
        try:
            channel, msg = self.framing.decode(frame)
        except ProtocolError as exc:
            router.rejected += 1
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
                router.mark_dead(KernelDied(f"server reports kernel {self.kernel_id} dead"))
        router.dispatch(channel, msg)

    def check(self, router: Router) -> None:
        """Turn a failed reconnect into the router's death."""
        if self.failure is not None:
            router.mark_dead(KernelDied(f"kernel {self.kernel_id}: {self.failure}"))

    def close(self) -> None:
        """Close the socket."""
        self.closed = True
        self.ws.close()


class _OverWebSocket:
    """What both WebSocket engines set up and answer alike (their base classes' own
    ``__init__`` would open ZeroMQ sockets, so they call this instead)."""

    link: WebSocketLink

    def _set_up(
        self, link: WebSocketLink, heartbeat: Heartbeat | None, max_unclaimed: int | None
    ) -> None:
        self.link = link
        self.session = link.session
        self.router = Router(max_unclaimed)
        self.heartbeat = heartbeat or Heartbeat()
        self.liveness_checks: list[Any] = []
        self._liveness_due = 0.0
        self.max_message_bytes: int | None = None
        self.closed = False
        self.iopub_join_wait = 0.0  # the server has been subscribed all along

    @property
    def ws(self) -> ClientConnection:
        """The current WebSocket (it changes on a reconnect)."""
        return self.link.ws

    @property
    def subprotocol(self) -> str | None:
        """The framing the server agreed to (``None``: legacy)."""
        return self.link.ws.subprotocol

    @property
    def reconnects(self) -> int:
        """How many times the WebSocket was reconnected."""
        return self.link.reconnects

    def has_channel(self, channel: ChannelName) -> bool:
        """Every message channel is multiplexed on the WebSocket; there is no heartbeat."""
        return channel != "hb"

    def watch(self, channel: ChannelName) -> None:
        """Every channel's messages come on the WebSocket, read all along."""

    def send(self, channel: ChannelName, msg: Message) -> None:
        """Send ``msg`` on ``channel`` over the WebSocket (from any thread)."""
        self.link.send(channel, msg)


class WebSocketEngine(_OverWebSocket, BlockingEngine):
    """The blocking engine over a Jupyter Server WebSocket (no heartbeat channel there)."""

    def __init__(
        self,
        link: WebSocketLink,
        *,
        heartbeat: Heartbeat | None = None,
        max_unclaimed: int | None = None,
    ) -> None:
        # The waiting machinery (wait_for, the pump lock, the condition) is reused.
        self._set_up(link, heartbeat, max_unclaimed)
        self._cond = threading.Condition()
        self._pump_lock = threading.Lock()
        self._outbox = deque()

    def wake(self) -> None:
        """Sends go straight to the WebSocket: there is nothing to wake."""

    def pump(self, max_wait: float | None) -> None:
        """Read what the WebSocket has (waiting up to ``max_wait``) and route it."""
        now = time.monotonic()
        with self._cond:
            self._heartbeat_tick(now)  # liveness checks (no heartbeat channel here)
        wait = min(self._health_wait(now), WAIT_SLICE)
        frames = self.link.receive(wait if max_wait is None else min(wait, max_wait))
        with self._cond:
            for frame in frames:
                self.link.route(frame, self.router)
            self.link.check(self.router)
            self._cond.notify_all()

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
            self.link.close()
        with self._cond:
            self._cond.notify_all()


class AsyncWebSocketEngine(_OverWebSocket, AsyncEngine):
    """The asyncio engine over a Jupyter Server WebSocket.

    A reader thread receives frames and hands them to the loop, where they are routed:
    the router is only ever touched from the loop's thread.
    """

    def __init__(
        self,
        link: WebSocketLink,
        *,
        heartbeat: Heartbeat | None = None,
        max_unclaimed: int | None = None,
    ) -> None:
        self._set_up(link, heartbeat, max_unclaimed)
        self._set_up_loop_state()
        self._reader: threading.Thread | None = None

    def _add_readers(self) -> None:
        if self._reader is None:
            self._reader = threading.Thread(
                target=self._read_forever, name="kernelwire-ws-reader", daemon=True
            )
            self._reader.start()

    def _remove_readers(self) -> None:
        """The reader thread stops by itself once the engine is closed."""

    def _read_forever(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self.closed:
            frames = self.link.receive(0.25)
            if frames or self.link.failure is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed under us
                    loop.call_soon_threadsafe(self._deliver, frames)
            if self.link.failure is not None:
                return

    def _deliver(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            self.link.route(frame, self.router)
        self.link.check(self.router)
        self._wake_waiters()

    def send_frames(self, channel: ChannelName, frames: list[Any]) -> None:
        """Not used over a WebSocket: messages are framed by :meth:`send`."""
        raise NotImplementedError("WebSocket engines send messages, not ZeroMQ frames")

    def _on_readable(self, channel: ChannelName | None = None) -> None:
        """Nothing to poll: the reader thread delivers."""

    def close(self) -> None:
        """Close the WebSocket; waiters get ClientClosed."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.link.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2)
        self._wake_waiters()


class RemoteKernel(RunsCode):
    """A kernel that lives behind a Jupyter Server; the same handle as a local one."""

    def __init__(self, server: JupyterServer, model: dict[str, Any], *, owned: bool) -> None:
        self.server = server
        self.model = model
        self.kernel_id: str = model["id"]
        self.name: str = model.get("name", "")
        self._owned = owned
        self._clients: list[BlockingKernelClient | AsyncKernelClient] = []
        self._run_client: BlockingKernelClient | None = None
        self._closed = False

    def _link(self, subprotocols: list[str] | None, session: Session) -> WebSocketLink:
        return WebSocketLink(self.server.transport, self.kernel_id, session, subprotocols)

    def client(
        self, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> BlockingKernelClient:
        """A started, ready :class:`BlockingKernelClient` over the server's WebSocket.

        ``subprotocols=[]`` asks for the legacy framing.
        """

        def engine(
            channels: list[ChannelName],
            session: Session,
            heartbeat: Heartbeat,
            max_unclaimed: int | None,
        ) -> WebSocketEngine:
            link = self._link(subprotocols, session)
            return WebSocketEngine(link, heartbeat=heartbeat, max_unclaimed=max_unclaimed)

        client = BlockingKernelClient(engine_factory=engine, **kwargs)
        client.start_channels()
        self._clients.append(client)
        client.wait_for_ready(60)
        return client

    def async_client(
        self, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> AsyncKernelClient:
        """A started :class:`AsyncKernelClient` over the server's WebSocket
        (``await client.wait_for_ready()`` before the first request if needed)."""

        def engine(
            channels: list[ChannelName],
            session: Session,
            heartbeat: Heartbeat,
            max_unclaimed: int | None,
        ) -> AsyncWebSocketEngine:
            link = self._link(subprotocols, session)
            return AsyncWebSocketEngine(link, heartbeat=heartbeat, max_unclaimed=max_unclaimed)

        client = AsyncKernelClient(engine_factory=engine, **kwargs)
        client.start_channels()
        self._clients.append(client)
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
        """Restart the kernel; clients stay connected (namespace gone).

        Their requests still waiting fail at once with :class:`KernelRestarted`.
        """
        lost = KernelRestarted(
            f"kernel {self.kernel_id} on {self.server.transport.url} was restarted while "
            "the request waited: its answer will not come"
        )
        for client in self._clients:
            if client.channels_running:
                client.engine.fail_pending(lost)
        self.model = self.server.transport.request("POST", f"api/kernels/{self.kernel_id}/restart")
        for client in self._clients:
            if client.channels_running:
                client.engine.router.death = None
                if isinstance(client, BlockingKernelClient):
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
        specs = answer.get("kernelspecs") if isinstance(answer, dict) else None
        if not isinstance(specs, dict):
            raise self._unexpected("GET api/kernelspecs", "kernel specs", answer)
        return dict(specs)

    def list_kernels(self) -> list[dict[str, Any]]:
        """The server's running kernels (their models)."""
        answer = self.transport.request("GET", "api/kernels")
        if not isinstance(answer, list):
            raise self._unexpected("GET api/kernels", "a list of kernels", answer)
        return answer

    def start_kernel(self, name: str = "python3", **body: Any) -> RemoteKernel:
        """Start a kernel (``POST /api/kernels``); leaving a ``with`` block deletes it."""
        model = self.transport.request("POST", "api/kernels", json={"name": name, **body})
        return RemoteKernel(self, self._kernel_model(model, "POST api/kernels"), owned=True)

    def kernel(self, kernel_id: str) -> RemoteKernel:
        """Attach to an existing kernel (not deleted when the handle is left)."""
        path = f"api/kernels/{kernel_id}"
        model = self.transport.request("GET", path)
        return RemoteKernel(self, self._kernel_model(model, f"GET {path}"), owned=False)

    def _kernel_model(self, answer: Any, what: str) -> dict[str, Any]:
        """``answer`` if it is a kernel model (an object with a string ``id``)."""
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise self._unexpected(what, "a kernel model (an object with an 'id')", answer)
        return answer

    def _unexpected(self, what: str, expected: str, answer: Any) -> ServerError:
        return ServerError(
            f"Jupyter server {self.transport.url}: {what} did not answer with {expected}: "
            f"{str(answer)[:200]!r}"
        )

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
    :class:`AuthenticationError` or :class:`ServerConnectionError` otherwise, and
    :class:`ServerError` for a redirect (a wrong base URL, a login page) or an answer
    that is not the API's.
    """
    server = JupyterServer(ServerTransport(url, token, timeout=timeout, verify=verify))
    try:
        server.kernel_specs()
    except BaseException:
        server.close()
        raise
    return server


__all__ = [
    "AsyncWebSocketEngine",
    "AuthenticationError",
    "JupyterServer",
    "RemoteKernel",
    "ServerConnectionError",
    "ServerError",
    "WebSocketEngine",
    "WebSocketLink",
    "connect_server",
]
