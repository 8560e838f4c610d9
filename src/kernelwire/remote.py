"""Remote kernels behind a Jupyter Server or a Kernel Gateway, with the local API.

>>> server = connect_server("http://127.0.0.1:8888", token="...")      # doctest: +SKIP
>>> with server.start_kernel("python3") as kernel:                     # doctest: +SKIP
...     kernel.client().execute_interactive("print(1)")
...     kernel.run("6 * 7").text
'42'

``kernel.client()`` is the same :class:`~kernelwire.BlockingKernelClient` as for a local
kernel, with the same engine; only its transport differs:
:class:`~kernelwire.transports.websocket.WebSocketTransport` moves the messages over the
server's WebSocket (either framing), reconnects a dropped socket with the same
``session_id`` so the server replays what it buffered, and drops the duplicates.
"""

from __future__ import annotations

import logging
from typing import Any

from .client.async_client import AsyncKernelClient
from .client.base import TransportFactory
from .client.blocking import BlockingKernelClient
from .errors import (
    AuthenticationError,
    KernelRestarted,
    NoSuchKernel,
    ServerConnectionError,
    ServerError,
)
from .execution import RunsCode
from .protocol.codec import Session
from .protocol.connection import ChannelName
from .transports.server import ServerTransport
from .transports.websocket import WebSocketTransport

log = logging.getLogger("kernelwire.remote")


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

    def _transport(self, subprotocols: list[str] | None) -> TransportFactory:
        """Makes a client's transport: this kernel's WebSocket, in the session's name."""

        def open_websocket(channels: list[ChannelName], session: Session) -> WebSocketTransport:
            return WebSocketTransport(
                self.server.transport, self.kernel_id, session.session_id, subprotocols
            )

        return open_websocket

    def client(
        self, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> BlockingKernelClient:
        """A started, ready :class:`BlockingKernelClient` over the server's WebSocket.

        ``subprotocols=[]`` asks for the legacy framing.
        """
        client = BlockingKernelClient(transport_factory=self._transport(subprotocols), **kwargs)
        client.start_channels()
        self._clients.append(client)
        client.wait_for_ready(60)
        return client

    def async_client(
        self, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> AsyncKernelClient:
        """A started :class:`AsyncKernelClient` over the server's WebSocket
        (``await client.wait_for_ready()`` before the first request if needed)."""
        client = AsyncKernelClient(transport_factory=self._transport(subprotocols), **kwargs)
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
                client.engine.reset_after_restart()
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
        """Start a kernel (``POST /api/kernels``); leaving a ``with`` block deletes it.

        Raises :class:`NoSuchKernel`, with the server's kernel names, if it has none
        called ``name`` (the server itself answers with an error page).
        """
        try:
            model = self.transport.request("POST", "api/kernels", json={"name": name, **body})
        except (AuthenticationError, ServerConnectionError):
            raise
        except ServerError:
            specs = self.kernel_specs()
            if name not in specs:
                raise NoSuchKernel(name, list(specs), f"on {self.transport.url}") from None
            raise
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
    "AuthenticationError",
    "JupyterServer",
    "RemoteKernel",
    "ServerConnectionError",
    "ServerError",
    "WebSocketTransport",
    "connect_server",
]
