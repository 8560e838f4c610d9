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
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .client.async_client import AsyncKernelClient
from .client.blocking import BlockingKernelClient
from .client.engine import AsyncEngine, BlockingEngine
from .client.heartbeat import Heartbeat
from .client.routing import Router
from .errors import KernelDied, KernelRestarted, KernelTimeout, KernelwireError, ProtocolError
from .execution import RunsCode
from .protocol.codec import Session
from .protocol.connection import ChannelName
from .protocol.message import Message
from .protocol.websocket import WebSocketFraming
from .transports.server import (
    OPEN_TIMEOUT,
    AuthenticationError,
    ServerConnectionError,
    ServerError,
    ServerTransport,
)

log = logging.getLogger("kernelwire.remote")

T = TypeVar("T")

RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0)
"""Back-off between attempts to reconnect a dropped WebSocket (about 11 s in all), after
which its kernel counts as lost (:class:`KernelDied`)."""

RECONNECT_OPEN_TIMEOUT = 10.0
"""Seconds one attempt to open the WebSocket may take at most; a reconnect attempt gets
less when the waiting request's timeout is nearer."""

MIN_OPEN_TIME = 0.05
"""A reconnect attempt is not begun with less time than this left to its waiter."""

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

    A dropped socket is reopened by whoever reads it (:meth:`receive`), one attempt at a
    time, with back-off (:data:`RECONNECT_DELAYS`), and never for longer than that
    reader may wait: a request's timeout holds while the server is away. Sends never
    wait for a reconnect: while the socket is down they queue, and go out in order once
    it is back.
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
        # Guards the socket's state (which socket, down or not, what waits to be sent);
        # held only for bookkeeping, never across a send or an open.
        self._lock = threading.Lock()
        self._unsent: deque[str | bytes] = deque()
        self._flushing = False
        self._down_since: float | None = None
        self._tries = 0
        self._next_try = 0.0
        self._last_error = ""
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.ws = self._open()

    def _open(self, timeout: float = OPEN_TIMEOUT) -> ClientConnection:
        ws = self.server.open_websocket(
            f"api/kernels/{self.kernel_id}/channels",
            subprotocols=self.subprotocols,
            open_timeout=timeout,
            session_id=self.session.session_id,
        )
        self.framing = WebSocketFraming(ws.subprotocol)
        return ws

    def send(self, channel: ChannelName, msg: Message) -> None:
        """Send ``msg`` on ``channel`` (thread-safe); while the socket is down, queue it."""
        if self.closed:
            raise KernelwireError("the client's channels are stopped")
        data = self.framing.encode(channel, msg)  # a message that cannot be sent fails here
        with self._lock:
            self._unsent.append(data)  # after what waits already: in order
            if self._down_since is not None or self._flushing:
                return  # the reconnect, or the thread sending now, sends it
            self._flushing = True
        self._flush()

    def _dropped(self, broken: ClientConnection) -> None:
        """Note that ``broken`` (if it is still ours) dropped. Under the lock."""
        if self.ws is broken and self._down_since is None and not self.closed:
            self._down_since = time.monotonic()
            self._tries = 0
            self._next_try = self._down_since + RECONNECT_DELAYS[0]
            log.warning("lost the WebSocket to kernel %s on %s", self.kernel_id, self.server.url)

    def why_waiting(self) -> str | None:
        """Why no answer may be coming (the socket is down and reconnecting), or ``None``."""
        since = self._down_since
        if since is None:
            return None
        return (
            f"the WebSocket to {self.server.url} dropped {time.monotonic() - since:.1f} s ago "
            f"and is not back ({self._tries} reconnect tries; last: "
            f"{self._last_error or 'none yet'})"
        )

    def receive(self, wait: float, budget: float | None = None) -> list[str | bytes]:
        """Frames that arrive within ``wait`` seconds (then whatever is already there).

        While the socket is down, try to reopen it instead (when an attempt is due, and
        for at most ``budget`` seconds: ``None`` allows :data:`RECONNECT_OPEN_TIMEOUT`),
        and return no frames.
        """
        if self._down_since is not None:
            self._reconnect_step(wait, budget)
            return []
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
            with self._lock:
                self._dropped(ws)
        return frames

    def _reconnect_step(self, wait: float, budget: float | None) -> None:
        """One reconnect attempt if one is due and the budget allows; else sleep up to
        ``wait`` (until the next attempt is due)."""
        if self.closed or self.failure is not None or self._down_since is None:
            return
        now = time.monotonic()
        limit = RECONNECT_OPEN_TIMEOUT if budget is None else min(budget, RECONNECT_OPEN_TIMEOUT)
        if now < self._next_try:
            time.sleep(min(wait, self._next_try - now))
            return
        if limit < MIN_OPEN_TIME:
            time.sleep(wait)  # no time for an attempt: this waiter's timeout is near
            return
        self._tries += 1
        try:
            ws = self._open(limit)
        except ServerConnectionError as exc:
            self._last_error = str(exc)
            if self._tries < len(RECONNECT_DELAYS):
                self._next_try = time.monotonic() + RECONNECT_DELAYS[self._tries]
            else:
                self.failure = (
                    f"lost the WebSocket to {self.server.url} and could not reconnect "
                    f"({self._tries} tries over {time.monotonic() - self._down_since:.1f} s; "
                    f"last: {exc})"
                )
            return
        except ServerError as exc:
            self.failure = f"the server refused to reconnect: {exc}"
            return
        with self._lock:
            if self.closed:
                ws.close()
                return
            self.ws = ws
            self._down_since = None
            self.reconnects += 1
            flush = not self._flushing  # else the thread sending goes on, on the new socket
            self._flushing = True
        log.warning("reconnected to kernel %s on %s", self.kernel_id, self.server.url)
        if flush:
            self._flush()

    def _flush(self) -> None:
        """Send what is queued, in order, while the socket is up. One thread at a time
        does this (``_flushing``); others queue behind it."""
        try:
            while True:
                with self._lock:
                    if not self._unsent or self._down_since is not None or self.closed:
                        self._flushing = False  # with the check: a send now flushes itself
                        return
                    data = self._unsent[0]
                    ws = self.ws
                try:
                    ws.send(data)
                except ConnectionClosed:
                    with self._lock:
                        self._dropped(ws)
                    continue  # down now (the reconnect sends it), or reconnected: again
                with self._lock:
                    self._unsent.popleft()
        except BaseException:
            with self._lock:
                self._flushing = False  # the next send tries again
            raise

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

    def _explained(self, timeout: KernelTimeout) -> KernelTimeout:
        """``timeout``, saying why when the WebSocket is down (the server is away)."""
        why = self.link.why_waiting()
        return timeout if why is None else KernelTimeout(f"{timeout}: {why}")


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
        if max_wait is not None:
            wait = min(wait, max_wait)
        frames = self.link.receive(wait, budget=max_wait)  # a reconnect fits the timeout
        with self._cond:
            for frame in frames:
                self.link.route(frame, self.router)
            self.link.check(self.router)
            self._cond.notify_all()

    def run_locked(self, func: Any) -> Any:
        """Call ``func`` under the routing lock."""
        with self._cond:
            return func()

    def wait_for(self, predicate: Callable[[], T | None], timeout: float | None) -> T:
        """As the blocking engine waits; a timeout while the WebSocket is down says so."""
        try:
            return super().wait_for(predicate, timeout)
        except KernelTimeout as exc:
            raise self._explained(exc) from None

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

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float | None) -> T:
        """As the asyncio engine waits; a timeout while the WebSocket is down says so."""
        try:
            return await super().wait_for(predicate, timeout)
        except KernelTimeout as exc:
            raise self._explained(exc) from None

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
