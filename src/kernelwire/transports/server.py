"""Jupyter Server (and Kernel Gateway) transport: REST over httpx, channels over a WebSocket.

The token travels in the ``Authorization`` header only: never in a URL, a log line or
a repr.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from ..errors import AuthenticationError, ServerConnectionError, ServerError
from ..protocol.websocket import V1_SUBPROTOCOL

# A long-lived connection, closed by its engine: websockets 17.1 and newer warn unless
# told so (``legacy=True``); older releases have no such parameter.
_LONG_LIVED: dict[str, Any] = (
    {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
)


OPEN_TIMEOUT = 30.0
"""Seconds opening a WebSocket (connection and handshake) may take unless told otherwise."""

REDACTED = "<redacted>"


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # not subscriptable at run time before Python 3.11
    _LoggerAdapter = logging.LoggerAdapter


class RedactingLogger(_LoggerAdapter):
    """websockets' logger for our connections: the token never reaches a log record.

    websockets logs every handshake header at DEBUG, the ``Authorization`` one with
    the token in it. This adapter (what ``connect(logger=...)`` accepts) rewrites a
    record's message and arguments before the record exists, so no handler, filter or
    formatter, whatever the logging configuration, ever sees the secret.
    """

    def __init__(self, logger: logging.Logger, secrets: list[str]) -> None:
        super().__init__(logger, {})
        self.secrets = [secret for secret in secrets if secret]

    def _redact(self, value: object) -> object:
        text = value if isinstance(value, str) else None
        if text is None:
            if isinstance(value, (int, float)):
                return value  # "%d" needs a number; no secret hides in one
            text = str(value)
        if not any(secret in text for secret in self.secrets):
            return value
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log ``msg % args`` with every secret replaced by ``<redacted>``."""
        if self.isEnabledFor(level):
            redacted = tuple(self._redact(arg) for arg in args)
            self.logger.log(level, self._redact(msg), *redacted, **kwargs)


__all__ = [
    "AuthenticationError",
    "RedactingLogger",
    "ServerConnectionError",
    "ServerError",
    "ServerTransport",
]


def _error_detail(response: httpx.Response, prefix: str) -> str:
    """What an error answer says, after ``prefix``; empty if it says nothing.

    Jupyter Server, Kernel Gateway and Enterprise Gateway answer errors with JSON
    (``reason``, ``message`` and, for a server-side exception, ``traceback``): the
    reason and message are the point, and a traceback's last line names the exception
    (``NoSuchKernel: No such kernel named spark``), where the first 300 characters of
    the raw body showed only the start of the traceback.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text[:300].strip()
        return f"{prefix}{text}" if text else ""
    parts = [str(body[key]).strip() for key in ("reason", "message") if body.get(key)]
    traceback = body.get("traceback")
    if isinstance(traceback, str) and traceback.strip():
        last = traceback.strip().splitlines()[-1].strip()
        if all(last not in part for part in parts):
            parts.append(last)
    detail = ": ".join(dict.fromkeys(parts))  # "Forbidden: Forbidden" once
    return f"{prefix}{detail[:500]}" if detail else ""


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """TLS settings for both httpx and the WebSocket: system CAs, a CA bundle, or none."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ServerTransport:
    """REST calls and WebSocket connections to one Jupyter Server.

    ``url`` may carry a path prefix (``https://host/user/ada/``). ``verify`` is passed
    to httpx (``False`` or a CA bundle path for self-signed servers).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"server URL must be http(s)://host[:port][/prefix], got {url!r}")
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/", "", ""))
        self._ssl = _ssl_context(verify)
        self._headers = {"Authorization": f"token {token}"} if token else {}
        self._ws_log = RedactingLogger(logging.getLogger("websockets.client"), [token or ""])
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers, timeout=timeout, verify=self._ssl
        )

    def __repr__(self) -> str:  # never the token
        return f"ServerTransport({self.url!r})"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API; the decoded JSON answer (``None`` for an empty one)."""
        try:
            response = self._http.request(method, path.lstrip("/"), **kwargs)
        except httpx.TransportError as exc:
            raise ServerConnectionError(f"cannot reach Jupyter server {self.url}: {exc}") from None
        status = response.status_code
        if status in (401, 403):
            detail = _error_detail(response, "")
            if status == 403 and detail not in ("", "Forbidden"):
                # Not the token: the server says why it refused (an Enterprise
                # Gateway refusing a user: "User 'root' is not authorized ...").
                raise AuthenticationError(
                    f"Jupyter server {self.url} refused {method} {path} (403): {detail}",
                    status=status,
                )
            raise AuthenticationError(
                f"Jupyter server {self.url} refused the token ({status} on {path})", status=status
            )
        if 300 <= status < 400:
            # Not followed: the token must not travel to wherever it points (a login
            # page, another host), and a redirect is not the API's answer.
            raise ServerError(
                f"Jupyter server {self.url}: {method} {path} was redirected ({status}) to "
                f"{response.headers.get('location', '(no Location header)')!r}: is the URL "
                "the server's base URL (with its path prefix, and http vs https right)?"
            )
        if status >= 400:
            raise ServerError(
                f"Jupyter server {self.url}: {method} {path} failed with {status}"
                f"{_error_detail(response, ': ')}",
                status=status,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            start = response.text[:100].strip()
            raise ServerError(
                f"Jupyter server {self.url}: {method} {path} answered {status} with a body "
                f"that is not JSON (is this a Jupyter Server?): {start!r}"
            ) from None

    def websocket_url(self, path: str, **query: str) -> str:
        """The ws(s):// URL of ``path`` on this server."""
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        qs = "&".join(f"{k}={quote(v)}" for k, v in query.items())
        return urlunsplit((scheme, parts.netloc, parts.path + path.lstrip("/"), qs, ""))

    def open_websocket(
        self,
        path: str,
        *,
        subprotocols: list[str] | None = None,
        open_timeout: float = OPEN_TIMEOUT,
        **query: str,
    ) -> ClientConnection:
        """Open a WebSocket to ``path`` (offering the v1 kernel protocol by default),
        within ``open_timeout`` seconds (connection and handshake)."""
        url = self.websocket_url(path, **query)
        context = self._ssl if url.startswith("wss:") else None
        offered = [V1_SUBPROTOCOL] if subprotocols is None else subprotocols
        try:
            ws: ClientConnection = connect(
                url,
                additional_headers=self._headers,
                subprotocols=[Subprotocol(name) for name in offered] or None,
                ssl=context,
                max_size=None,
                open_timeout=open_timeout,
                logger=self._ws_log,
                **_LONG_LIVED,
            )
        except InvalidStatus as exc:
            raise self._refused(path, exc) from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, InvalidStatus):  # a redirect websockets could not follow
                raise self._refused(path, cause) from None
            raise ServerConnectionError(f"cannot open a WebSocket to {self.url}: {exc}") from None
        # Small request frames must not wait for Nagle's algorithm and the peer's delayed
        # ACK (40 ms per round trip on Linux).
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ws

    def _refused(self, path: str, exc: InvalidStatus) -> ServerError:
        """The error for a WebSocket handshake the server answered with ``exc``'s status."""
        status = exc.response.status_code
        if status in (401, 403):
            return AuthenticationError(
                f"Jupyter server {self.url} refused the token on its WebSocket ({status})"
            )
        where = exc.response.headers.get("Location")
        moved = f", redirected to {where!r}" if 300 <= status < 400 and where else ""
        return ServerError(
            f"Jupyter server {self.url}: WebSocket {path} refused ({status}{moved})", status=status
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()
