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
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, Literal

from .client.async_client import AsyncKernelClient
from .client.base import TransportFactory
from .client.blocking import BlockingKernelClient
from .errors import (
    AuthenticationError,
    KernelDied,
    KernelEnvError,
    KernelRestarted,
    KernelTimeout,
    NoSuchKernel,
    ServerConnectionError,
    ServerError,
)
from .execution import RunsCode
from .protocol.codec import Session
from .protocol.connection import ChannelName
from .transports.server import OPEN_TIMEOUT, ServerTransport
from .transports.websocket import WebSocketTransport

log = logging.getLogger("kernelwire.remote")

Gateway = Literal["auto", "jupyter", "enterprise"]
"""What serves the kernels: ``"enterprise"`` for a Jupyter Enterprise Gateway,
``"jupyter"`` for a Jupyter Server or Kernel Gateway, ``"auto"`` to ask the server
(an Enterprise Gateway's ``GET /api`` names its ``gateway_version``)."""

READY_TIMEOUT = 60.0
"""Seconds a new client waits for the kernel to answer unless told otherwise."""

PROGRESS_EVERY = 5.0
"""Seconds between progress reports while a kernel launches."""

GONE_PROBE_EVERY = 2.0
"""Seconds between asks, while a client waits on a kernel, whether the server still has
it: a Jupyter Server 1.x (an Enterprise Gateway's) keeps the WebSocket open when it
deletes or culls the kernel behind it, and nothing else would say it is gone."""

LAUNCH_MARGIN = 10.0
"""Seconds the start request may take past ``launch_timeout``: the gateway's own launch
timeout (``KERNEL_LAUNCH_TIMEOUT``) fires first, and its answer says why."""


@contextmanager
def _reporting_progress(
    what: str, limit: float, every: float, progress: Callable[[float], object] | None
) -> Iterator[None]:
    """While the block runs, log (and call ``progress`` with) the seconds waited so far,
    every ``every`` seconds, from a helper thread: the block itself is one blocking wait
    (the start request, then the first ``kernel_info``) that cannot report meanwhile."""
    done = threading.Event()
    started = time.monotonic()

    def report() -> None:
        while not done.wait(every):
            waited = time.monotonic() - started
            log.info("still waiting for %s: %.0f s of %.0f s", what, waited, limit)
            if progress is not None:
                try:
                    progress(waited)
                except Exception:  # a progress hook must not break the launch
                    log.exception("progress callback failed while waiting for %s", what)

    reporter = threading.Thread(target=report, name="kernelwire-launch-progress", daemon=True)
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()


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
        self._gone_error: KernelDied | None = None
        self._probe_lock = threading.Lock()
        self._probing = False
        self._next_probe = 0.0

    def _transport(self, subprotocols: list[str] | None, open_timeout: float) -> TransportFactory:
        """Makes a client's transport: this kernel's WebSocket, in the session's name."""

        def open_websocket(channels: list[ChannelName], session: Session) -> WebSocketTransport:
            return WebSocketTransport(
                self.server.transport,
                self.kernel_id,
                session.session_id,
                subprotocols,
                open_timeout=open_timeout,
            )

        return open_websocket

    def client(
        self,
        *,
        subprotocols: list[str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        open_timeout: float = OPEN_TIMEOUT,
        **kwargs: Any,
    ) -> BlockingKernelClient:
        """A started, ready :class:`BlockingKernelClient` over the server's WebSocket.

        ``subprotocols=[]`` asks for the legacy framing. ``open_timeout`` bounds the
        WebSocket's opening, ``ready_timeout`` the wait for the kernel's first answer.
        A kernel the server no longer has (deleted, or culled by a gateway as idle) is
        :class:`KernelDied`.
        """
        factory = self._transport(subprotocols, open_timeout)
        client = BlockingKernelClient(transport_factory=factory, **kwargs)
        try:
            client.start_channels()
        except ServerError as exc:
            if exc.status == 404:
                raise self._gone(exc) from None
            raise
        self._clients.append(client)
        client.engine.add_liveness_check(self._still_there)
        client.wait_for_ready(ready_timeout)
        return client

    def _still_there(self) -> KernelDied | None:
        """A liveness check: :class:`KernelDied` once the server answered 404 for this
        kernel. It must not block the engine, so the asking runs on a helper thread, at
        most every :data:`GONE_PROBE_EVERY` seconds; a later check sees the answer."""
        if self._gone_error is not None:
            return self._gone_error
        now = time.monotonic()
        with self._probe_lock:
            if self._probing or now < self._next_probe:
                return None
            self._probing = True
            self._next_probe = now + GONE_PROBE_EVERY
        threading.Thread(target=self._probe, name="kernelwire-kernel-probe", daemon=True).start()
        return None

    def _probe(self) -> None:
        try:
            self.server.transport.request(
                "GET", f"api/kernels/{self.kernel_id}", timeout=GONE_PROBE_EVERY * 5
            )
        except ServerError as exc:  # unreachable for now: the WebSocket's business
            if exc.status == 404 and not self._closed:
                self._gone_error = self._gone(exc)
        except RuntimeError:  # httpx's answer once the server handle is closed meanwhile
            log.debug("kernel %s: not probed, the server handle is closed", self.kernel_id)
        finally:
            with self._probe_lock:
                self._probing = False

    def _gone(self, cause: ServerError) -> KernelDied:
        return KernelDied(
            f"kernel {self.name} {self.kernel_id} is gone from {self.server.transport.url} "
            f"(shut down, or culled by the gateway as idle): {cause}"
        )

    def async_client(
        self, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> AsyncKernelClient:
        """A started :class:`AsyncKernelClient` over the server's WebSocket
        (``await client.wait_for_ready()`` before the first request if needed)."""
        factory = self._transport(subprotocols, OPEN_TIMEOUT)
        client = AsyncKernelClient(transport_factory=factory, **kwargs)
        client.start_channels()
        client.engine.add_liveness_check(self._still_there)
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

    def _wait_launched(
        self, limit: float, every: float, progress: Callable[[float], object] | None
    ) -> None:
        """Wait up to ``limit`` seconds for the kernel's first answer (its run client)."""
        what = f"kernel {self.name} {self.kernel_id} on {self.server.transport.url}"
        if limit <= 0:
            raise KernelTimeout(f"{what}: the start request alone took the whole time")
        with _reporting_progress(what, limit, every, progress):
            started = time.monotonic()
            try:
                client = self.client(ready_timeout=limit, open_timeout=limit)
            except ServerConnectionError as exc:
                if time.monotonic() - started < limit:
                    raise
                raise KernelTimeout(f"{what}: its WebSocket did not open: {exc}") from exc
            self._run_client = client

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

    def __init__(self, transport: ServerTransport, gateway: Gateway = "auto") -> None:
        self.transport = transport
        self._gateway = gateway

    @property
    def enterprise(self) -> bool:
        """Whether this is a Jupyter Enterprise Gateway (asked once, with ``gateway="auto"``)."""
        if self._gateway == "auto":
            try:
                about = self.transport.request("GET", "api")
            except (AuthenticationError, ServerConnectionError):
                raise
            except ServerError:
                about = None  # no version endpoint: not a gateway that names itself
            found = isinstance(about, dict) and "gateway_version" in about
            self._gateway = "enterprise" if found else "jupyter"
        return self._gateway == "enterprise"

    def kernel_specs(self) -> dict[str, Any]:
        """The server's kernel specs by name."""
        answer = self.transport.request("GET", "api/kernelspecs")
        specs = answer.get("kernelspecs") if isinstance(answer, dict) else None
        if not isinstance(specs, dict):
            raise self._unexpected("GET api/kernelspecs", "kernel specs", answer)
        return dict(specs)

    def kernel_spec_summaries(self) -> dict[str, tuple[str, str]]:
        """The server's kernel specs by name, each as ``(display_name, language)``; a
        field the server left out is the spec's name and ``""``."""
        summaries = {}
        for name, model in self.kernel_specs().items():
            spec = model.get("spec") if isinstance(model, dict) else None
            spec = spec if isinstance(spec, dict) else {}
            summaries[name] = (str(spec.get("display_name", name)), str(spec.get("language", "")))
        return summaries

    def list_kernels(self) -> list[dict[str, Any]]:
        """The server's running kernels (their models).

        An Enterprise Gateway refuses the list (403) unless started with
        ``--EnterpriseGatewayApp.list_kernels=True``: a :class:`ServerError` says so.
        """
        try:
            answer = self.transport.request("GET", "api/kernels")
        except AuthenticationError as exc:
            if exc.status == 403 and self.enterprise:
                raise ServerError(
                    f"Enterprise Gateway {self.transport.url} does not list its kernels "
                    "(403 on GET api/kernels): it does only when started with "
                    "--EnterpriseGatewayApp.list_kernels=True",
                    status=403,
                ) from None
            raise
        if not isinstance(answer, list):
            raise self._unexpected("GET api/kernels", "a list of kernels", answer)
        return answer

    def start_kernel(
        self,
        name: str = "python3",
        *,
        env: Mapping[str, str] | None = None,
        check_env: bool = True,
        launch_timeout: float | None = None,
        progress: Callable[[float], object] | None = None,
        progress_every: float = PROGRESS_EVERY,
        **body: Any,
    ) -> RemoteKernel:
        """Start a kernel (``POST /api/kernels``); leaving a ``with`` block deletes it.

        ``env`` is the kernel's environment, sent in the request's body (an Enterprise
        Gateway or Kernel Gateway passes on only ``KERNEL_``-prefixed variables, such as
        ``KERNEL_USERNAME``, unless its ``client_envs`` allows more): other names are a
        :class:`KernelEnvError` rather than silently lost, unless ``check_env=False``
        (for a gateway whose administrator allowed them). A plain Jupyter Server (2.x)
        ignores ``env`` altogether.

        ``launch_timeout`` (seconds) is how long the launch may take, start request and
        the kernel's first answer together, for a gateway that schedules a pod or a
        YARN application first: it is also sent to the gateway as
        ``KERNEL_LAUNCH_TIMEOUT``, and ``start_kernel`` returns a kernel that answers.
        Meanwhile a log line (logger ``kernelwire.remote``, INFO) and ``progress``
        (called from a helper thread with the seconds waited) report every
        ``progress_every`` seconds. Past the limit: :class:`KernelTimeout` naming the
        gateway and the kernel, the kernel deleted. Without it, the request takes the
        server's timeout and the first use waits 60 s for the kernel.

        Raises :class:`NoSuchKernel`, with the server's kernel names, if it has none
        called ``name`` (the server itself answers with an error page).
        """
        env = dict(env or {})
        if check_env:
            self._check_env(env)
        request_timeout: float | None = None
        if launch_timeout is not None:
            env.setdefault("KERNEL_LAUNCH_TIMEOUT", str(math.ceil(launch_timeout)))
            request_timeout = launch_timeout + LAUNCH_MARGIN
        if env:
            body["env"] = env
        started = time.monotonic()
        # Only a timed launch names the kind of server (one more request, on a gateway).
        kind = self._kind() if launch_timeout is not None else "server"
        what = f"kernel {name!r} on {kind} {self.transport.url}"
        # A helper thread per start only when someone wants to hear about the wait.
        reporting = (
            _reporting_progress(what, launch_timeout or 0.0, progress_every, progress)
            if launch_timeout is not None or progress is not None
            else nullcontext()
        )
        try:
            with reporting:
                model = self._post_kernel(name, body, request_timeout)
        except ServerError as exc:
            waited = time.monotonic() - started
            if launch_timeout is not None and waited >= launch_timeout:
                raise KernelTimeout(
                    f"{what} did not launch within launch_timeout={launch_timeout:g} s "
                    f"(waited {waited:.0f} s): {exc}"
                ) from exc
            raise
        kernel = RemoteKernel(self, self._kernel_model(model, "POST api/kernels"), owned=True)
        if launch_timeout is None:
            return kernel
        remaining = launch_timeout - (time.monotonic() - started)
        try:
            kernel._wait_launched(remaining, progress_every, progress)
        except KernelTimeout as exc:
            kernel.shutdown()
            raise KernelTimeout(
                f"{what} (id {kernel.kernel_id}) did not answer within "
                f"launch_timeout={launch_timeout:g} s; it was deleted: {exc}"
            ) from exc
        except BaseException:
            kernel.shutdown()
            raise
        return kernel

    def _post_kernel(self, name: str, body: dict[str, Any], timeout: float | None) -> Any:
        """``POST api/kernels``; :class:`NoSuchKernel` if the server has no ``name``."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            return self.transport.request(
                "POST", "api/kernels", json={"name": name, **body}, **extra
            )
        except (AuthenticationError, ServerConnectionError):
            raise
        except ServerError:
            specs = self.kernel_specs()
            if name not in specs:
                raise NoSuchKernel(name, list(specs), f"on {self.transport.url}") from None
            raise

    def _check_env(self, env: Mapping[str, str]) -> None:
        """Refuse variables a gateway would drop, before anything starts."""
        bad = [key for key, value in env.items() if not isinstance(value, str)]
        if bad:
            raise KernelEnvError(
                f"kernel environment values must be strings: {', '.join(sorted(bad))}"
            )
        dropped = sorted(key for key in env if not key.startswith("KERNEL_"))
        if dropped:
            raise KernelEnvError(
                f"{self._kind()} {self.transport.url} passes only KERNEL_-prefixed "
                f"variables to a kernel by default and would drop {', '.join(dropped)}; "
                "rename them (KERNEL_...), or pass check_env=False if the gateway allows "
                "them (Enterprise Gateway: EnterpriseGatewayApp.client_envs, EG_CLIENT_ENVS)"
            )

    def _kind(self) -> str:
        return "Enterprise Gateway" if self.enterprise else "Jupyter server"

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
    url: str,
    token: str | None = None,
    *,
    timeout: float = 30.0,
    verify: bool | str = True,
    gateway: Gateway = "auto",
) -> JupyterServer:
    """A handle on the Jupyter Server (or Kernel Gateway, or Enterprise Gateway) at ``url``.

    ``gateway="enterprise"`` says it is a Jupyter Enterprise Gateway; ``"auto"`` asks
    the server when it matters (``GET /api``, once). See
    :meth:`JupyterServer.start_kernel` for the ``KERNEL_`` environment and long
    launches.

    Checks the server answers and accepts the token (``GET /api/kernelspecs``, which a
    Kernel Gateway allows even where it hides its kernel list):
    :class:`AuthenticationError` or :class:`ServerConnectionError` otherwise, and
    :class:`ServerError` for a redirect (a wrong base URL, a login page) or an answer
    that is not the API's.
    """
    if gateway not in ("auto", "jupyter", "enterprise"):
        raise ValueError(f"gateway must be 'auto', 'jupyter' or 'enterprise', got {gateway!r}")
    server = JupyterServer(ServerTransport(url, token, timeout=timeout, verify=verify), gateway)
    try:
        server.kernel_specs()
    except BaseException:
        server.close()
        raise
    return server


__all__ = [
    "AuthenticationError",
    "Gateway",
    "JupyterServer",
    "KernelEnvError",
    "RemoteKernel",
    "ServerConnectionError",
    "ServerError",
    "WebSocketTransport",
    "connect_server",
]
