"""Remote kernels when the server misbehaves: redirects, answers that are not the API's,
connections cut under a waiting request, and what may reach the logs."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from kernelwire import KernelDied, KernelRestarted, KernelTimeout, requests
from kernelwire.remote import ServerError, connect_server
from kernelwire.transports.server import ServerTransport
from test_remote import TOKEN, jupyter_server_url  # noqa: F401 - a fixture, used by name
from test_restart import LONG, WAIT, Waiter, running, running_async


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's ``status``, ``headers`` and ``body``."""

    protocol_version = "HTTP/1.1"  # websockets refuses an HTTP/1.0 answer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        server: _Canned = self.server  # type: ignore[assignment]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))  # keep-alive: take it all
        self.send_response(server.status)
        for name, value in server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(server.body)))
        self.end_headers()
        self.wfile.write(server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest shows stderr of failing tests


class _Canned(http.server.ThreadingHTTPServer):
    status = 200
    headers: dict[str, str] = {}  # noqa: RUF012 - set per instance below
    body = b""


@contextlib.contextmanager
def canned(status: int, headers: dict[str, str], body: bytes = b"") -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1 that gives every request the same answer."""
    server = _Canned(("127.0.0.1", 0), _Answer)
    server.status, server.headers, server.body = status, headers, body
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_server_error_at_the_first_call(status: int) -> None:
    redirect = {"Location": "/login?next=%2Fapi%2Fkernelspecs"}
    with canned(status, redirect) as url, pytest.raises(ServerError) as caught:
        connect_server(url, TOKEN)
    message = str(caught.value)
    assert f"redirected ({status})" in message
    assert "/login?next=%2Fapi%2Fkernelspecs" in message
    assert TOKEN not in message


def test_a_redirect_on_the_websocket_names_where_it_points() -> None:
    with canned(302, {"Location": "https://elsewhere.example/hub/login"}) as url:
        transport = ServerTransport(url, TOKEN)
        try:
            with pytest.raises(ServerError, match=r"302, redirected to .*elsewhere\.example"):
                transport.open_websocket("api/kernels/abc/channels")
        finally:
            transport.close()


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>Welcome</html>", "not JSON"),
        (b"[1, 2]", "kernel specs"),
        (b'{"kernelspecs": 7}', "kernel specs"),
    ],
)
def test_an_answer_that_is_not_the_apis_is_a_server_error(body: bytes, what: str) -> None:
    json = {"Content-Type": "application/json"}
    with canned(200, json, body) as url, pytest.raises(ServerError, match=what):
        connect_server(url, TOKEN)


def test_a_start_answered_without_a_kernel_model_is_a_server_error() -> None:
    specs_only = b'{"kernelspecs": {}}'
    with (
        canned(200, {"Content-Type": "application/json"}, specs_only) as url,
        connect_server(url, TOKEN) as server,
    ):
        with pytest.raises(ServerError, match="did not answer with a kernel model"):
            server.start_kernel("python3")
        with pytest.raises(ServerError, match="list of kernels"):
            server.list_kernels()


class _Keep(logging.Handler):
    """Keeps every record, fully formatted, whatever its logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.texts.append(f"{record.name}: {text} {record.args!r}")


@contextlib.contextmanager
def everything_logged() -> Iterator[_Keep]:
    """Root logging at DEBUG for the block, every record kept."""
    root = logging.getLogger()
    keep = _Keep()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(keep)
    try:
        yield keep
    finally:
        root.removeHandler(keep)
        root.setLevel(level)


def test_the_token_never_reaches_a_log_record(jupyter_server_url: str) -> None:  # noqa: F811
    """Root logging at DEBUG through a whole session: REST calls, WebSocket opens (blocking
    and asyncio), a reconnect after a cut, a restart. websockets logs each handshake
    header there, the Authorization one included."""
    with (
        everything_logged() as log,
        connect_server(jupyter_server_url, TOKEN) as server,
        server.start_kernel("python3") as kernel,
    ):
        client = kernel.client()
        assert kernel.run("6 * 7").text == "42"
        client.engine.transport.ws.socket.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        assert client.execute("1", reply=True, timeout=60)["content"]["status"] == "ok"
        assert client.engine.transport.reconnects == 1  # type: ignore[attr-defined]

        async def over_asyncio() -> None:
            aclient = kernel.async_client()
            try:
                await aclient.wait_for_ready(60)
            finally:
                aclient.stop_channels()

        asyncio.run(over_asyncio())
        kernel.restart()
        server.list_kernels()
    headers = [text for text in log.texts if "Authorization" in text]
    assert len(headers) >= 3, "websockets did not log the handshakes: is DEBUG on?"
    assert all("<redacted>" in text for text in headers), headers
    leaks = [text for text in log.texts if TOKEN in text]
    assert not leaks, leaks[:3]


def test_a_remote_restart_fails_the_waiting_requests_at_once(
    jupyter_server_url: str,  # noqa: F811
) -> None:
    with (
        connect_server(jupyter_server_url, TOKEN) as server,
        server.start_kernel("python3") as kernel,
    ):
        client = kernel.client()
        busy = client.submit(requests.execute(LONG))
        running(busy)
        waiter = Waiter(lambda: busy.reply(WAIT))
        waiter.start()
        kernel.restart()
        waiter.join(30)
        assert isinstance(waiter.error, KernelRestarted), waiter.error
        assert client.execute("1 + 1", reply=True, timeout=30)["content"]["status"] == "ok"

        async def over_asyncio() -> None:
            aclient = kernel.async_client()
            try:
                await aclient.wait_for_ready(60)
                abusy = aclient.submit(requests.execute(LONG))
                await running_async(abusy)
                reply = asyncio.ensure_future(abusy.reply(WAIT))
                await asyncio.sleep(0.2)  # it waits
                await asyncio.to_thread(kernel.restart)
                with pytest.raises(KernelRestarted):
                    await asyncio.wait_for(reply, WAIT / 2)
            finally:
                aclient.stop_channels()

        asyncio.run(over_asyncio())


def test_a_kernel_the_server_restarts_after_its_death_fails_the_waiting_requests(
    jupyter_server_url: str,  # noqa: F811
) -> None:
    """The server's restarter replaces a kernel that died and says so with a
    ``restarting`` status: what waited for the dead kernel fails with KernelRestarted,
    not at its own timeout; the new kernel answers what comes next."""
    with (
        connect_server(jupyter_server_url, TOKEN) as server,
        server.start_kernel("python3") as kernel,
    ):
        client = kernel.client()
        client.wait_for_ready(60)
        dying = client.submit(requests.execute("import os, time; time.sleep(0.5); os._exit(1)"))
        other = client.submit(requests.execute(LONG))  # queued behind the dying cell
        started = time.monotonic()
        with pytest.raises(KernelRestarted, match="server restarted it"):
            dying.reply(WAIT)
        assert time.monotonic() - started < WAIT / 2  # the restarter's poll, not the timeout
        with pytest.raises(KernelRestarted):
            other.reply(5)
        assert client.execute("1 + 1", reply=True, timeout=60)["content"]["status"] == "ok"


class Proxy:
    """A TCP relay on 127.0.0.1 in front of a server, which a test cuts and restores.

    ``cut()`` closes every relayed connection and stops listening (the server is gone:
    connections are refused); ``cut(blackhole=True)`` keeps accepting connections but
    never answers on them (a server or network that hangs).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.upstream = ("127.0.0.1", parts.port)
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.blackhole = False
        self.port = self._listen(0)
        self.url = urlunsplit((parts.scheme, f"127.0.0.1:{self.port}", parts.path, "", ""))

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return int(listener.getsockname()[1])

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            with self._lock:
                self._sockets.append(conn)
                if self.blackhole:
                    continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._sockets.append(upstream)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self, blackhole: bool = False) -> None:
        """Drop every connection; refuse new ones, or with ``blackhole`` hang them."""
        with self._lock:
            self.blackhole = blackhole
            sockets, self._sockets = self._sockets, []
            if not blackhole and self._listener is not None:
                sockets.append(self._listener)
                self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        """Relay again, on the same port."""
        self.cut()
        self.blackhole = False
        self._listen(self.port)

    def close(self) -> None:
        self.cut()


MARGIN = 1.5
"""Seconds a wait may end after its timeout (scheduling on a loaded 2-core machine)."""


def timed_out(wait: float, call: Any) -> tuple[KernelTimeout, float]:
    """Run ``call``, which must raise KernelTimeout; the error and how long it took."""
    started = time.monotonic()
    with pytest.raises(KernelTimeout) as caught:
        call()
    return caught.value, time.monotonic() - started


def test_timeouts_hold_while_the_server_is_away(jupyter_server_url: str) -> None:  # noqa: F811
    """The server goes away under a waiting request: every wait ends on its timeout (with
    the reason), not after the reconnect back-off; the client comes back with the server,
    and a server gone for good is reported as such."""
    proxy = Proxy(jupyter_server_url)
    try:
        with (
            connect_server(proxy.url, TOKEN) as server,
            server.start_kernel("python3") as kernel,
        ):
            client = kernel.client()
            assert client.execute("1", reply=True, timeout=30)["content"]["status"] == "ok"
            pending = client.submit(requests.execute("import time; time.sleep(1)"))
            proxy.cut()  # refused: the server is gone
            error, took = timed_out(3, lambda: pending.reply(timeout=3))
            assert took < 3 + MARGIN, took
            assert "WebSocket" in str(error) and "dropped" in str(error), error
            proxy.cut(blackhole=True)  # reconnects hang in their handshake now
            error, took = timed_out(2, lambda: client.execute("2", reply=True, timeout=2))
            assert took < 2 + MARGIN, took
            proxy.restore()
            assert client.execute("3", reply=True, timeout=60)["content"]["status"] == "ok"
            assert client.engine.transport.reconnects == 1  # type: ignore[attr-defined]
            proxy.cut()
            with pytest.raises(KernelDied, match="could not reconnect"):
                client.execute("4", reply=True, timeout=None)  # gone for good: said so
            proxy.restore()  # to delete the kernel
    finally:
        proxy.close()


def test_asyncio_timeouts_and_sends_hold_while_the_server_is_away(
    jupyter_server_url: str,  # noqa: F811
) -> None:
    proxy = Proxy(jupyter_server_url)

    async def main(kernel: Any) -> None:
        client = kernel.async_client()
        try:
            await client.wait_for_ready(60)
            proxy.cut()
            started = time.monotonic()
            msg_id = client.execute("1")  # queued while the socket is down: no wait
            assert time.monotonic() - started < MARGIN
            assert isinstance(msg_id, str)
            started = time.monotonic()
            with pytest.raises(KernelTimeout, match="WebSocket"):
                await client.execute("2", reply=True, timeout=3)
            assert time.monotonic() - started < 3 + MARGIN
            proxy.restore()
            reply = await client.execute("3", reply=True, timeout=60)
            assert reply["content"]["status"] == "ok"
        finally:
            client.stop_channels()

    try:
        with (
            connect_server(proxy.url, TOKEN) as server,
            server.start_kernel("python3") as kernel,
        ):
            asyncio.run(main(kernel))
    finally:
        proxy.close()
