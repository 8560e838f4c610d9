"""What every kernel client shares: connection info, session, requests, and every
algorithm that waits.

The blocking, asyncio and callback clients differ only in how they wait. The request
methods (``execute``, ``complete``, ...) are written once here, in terms of
:meth:`KernelClientBase._send` and :meth:`KernelClientBase._request`; so are readiness,
liveness and taking unclaimed messages, as generators of steps
(:mod:`kernelwire.client._steps`) that each client runs its own way.
"""

from __future__ import annotations

import logging
import os
import queue
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar, overload

import zmq

from ..connection_file import load_connection_file
from ..errors import ClientClosed, KernelTimeout, ReplyLost
from ..protocol import requests
from ..protocol.connection import PORT_FIELDS, ChannelName, ConnectionInfo, load_connection_info
from ..protocol.message import Channel, Message
from ..protocol.requests import HistAccessType, Request
from ..session import Session
from ..transports.base import Transport
from ..transports.zmq import ZmqTransport
from . import _engine
from ._engine import AsyncEngine, BlockingEngine, take_unclaimed
from ._hooks import make_stdin_hook, print_output, terminal_stdin
from ._pending import Hook, PendingBase
from ._steps import Steps, Wait, time_left
from .heartbeat import Heartbeat
from .routing import MAX_UNCLAIMED, RequestState, Router, Sink, iopub_joined

EngineT = TypeVar("EngineT", BlockingEngine, AsyncEngine)
PendingT = TypeVar("PendingT", bound=PendingBase[Any])
ReplyT = TypeVar("ReplyT")
"""What a request method gives with ``reply=True``: the reply, or an awaitable of it."""

log = logging.getLogger("kernelwire.client")


# The connection keywords jupyter_client's managers pass their clients
# (``KernelManager.client()``: ``get_connection_info()`` plus ``connection_file``).
JUPYTER_CONNECTION_KEYWORDS = frozenset(
    {
        *PORT_FIELDS,
        "transport",
        "ip",
        "key",
        "signature_scheme",
        "kernel_name",
        "curve_publickey",
        "curve_secretkey",
    }
)

TransportFactory = Callable[[list[ChannelName], Session], Transport[Any]]
"""Makes the transport of a client's channels: ``(channels, session) -> Transport``."""

ALL_CLAIMS: frozenset[Channel] = frozenset({"shell", "iopub", "stdin", "control"})
REPLY_CLAIMS: frozenset[Channel] = frozenset({"shell", "control"})


class KernelClientBase(Generic[EngineT, ReplyT]):
    """Connection info, session and request building, shared by every client.

    ``connection_file`` or ``connection_info`` may be given here or loaded later with
    :meth:`load_connection_file` / :meth:`load_connection_info`. ``transport_factory``
    replaces the ZeroMQ transport (a remote kernel's WebSocket, a fake in tests):
    ``start_channels`` calls it with the channels to open and the session. ``time_to_dead`` is
    how long an unanswered heartbeat means the kernel is dead.

    ``max_unclaimed`` bounds each channel's queue of messages no request claimed (those
    ``get_iopub_msg()`` and friends return), :data:`~kernelwire.client.routing.MAX_UNCLAIMED`
    (10,000) by default: some 30-40 MB of small messages, where a queue nobody reads
    grows for ever (2 GB per million). When a queue is full its oldest message is
    dropped, with a warning, and counted in :attr:`unclaimed_dropped`; ``None`` lifts
    the bound. Messages a request claims (``submit()``, ``reply=True``) are not affected.
    What ZeroMQ buffers while the client reads slower than the kernel sends is not
    bounded by it (IOPub has no high-water mark, so that nothing is lost silently).

    jupyter_client's keywords work too: ``transport``, ``ip``, the five ``*_port``
    numbers, ``key``, ``signature_scheme``, ``kernel_name`` and the CurveZMQ keys give the
    connection info (ports still 0, as a manager's client has before its kernel starts:
    none yet); ``session`` may be a jupyter_client ``Session`` (its id, key and scheme are
    used); ``parent`` is the manager that made the client, ``log`` a logger, ``config``
    is ignored.

    The class is generic in its engine and in what a request method gives with
    ``reply=True`` (``ReplyT``): the reply, a :class:`Message`, on the blocking clients;
    a coroutine of it on the asyncio client.
    """

    _engine_class: type[EngineT]

    def __init__(
        self,
        connection_file: str | os.PathLike[str] | None = None,
        *,
        connection_info: ConnectionInfo | Mapping[str, Any] | None = None,
        session: Session | None = None,
        context: zmq.Context[Any] | None = None,
        time_to_dead: float = 3.0,
        heartbeat_interval: float = 0.5,
        max_unclaimed: int | None = MAX_UNCLAIMED,
        allow_stdin: bool = True,
        transport_factory: TransportFactory | None = None,
        parent: Any = None,
        log: Any = None,
        **jupyter_options: Any,
    ) -> None:
        unknown = set(jupyter_options) - JUPYTER_CONNECTION_KEYWORDS - {"config"}
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keywords: {sorted(unknown)}")
        self.connection_file: str | None = None
        self.connection_info: ConnectionInfo | None = None
        self.parent = parent
        self.log = log
        if session is not None and not isinstance(session, Session):
            session = Session(session.key, session.signature_scheme, session=session.session)
        self.session = session or Session()
        self.context = context
        self.time_to_dead = time_to_dead
        self.heartbeat_interval = heartbeat_interval
        self.max_unclaimed = max_unclaimed
        self.allow_stdin = allow_stdin
        self._engine: EngineT | None = None
        self._transport_factory = transport_factory
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.startup_output: list[Message] = []
        jupyter_options.pop("config", None)
        if connection_info is None and jupyter_options:
            connection_info = self._jupyter_connection_info(jupyter_options)
            if connection_file:
                self.connection_file = os.fspath(connection_file)
            connection_file = None
        if connection_file:
            self.load_connection_file(connection_file)
        elif connection_info is not None:
            self.load_connection_info(connection_info)

    def _jupyter_connection_info(self, options: dict[str, Any]) -> dict[str, Any] | None:
        """Connection info from jupyter_client's keywords; ``None`` while a port is 0."""
        if not all(options.get(name) for name in PORT_FIELDS):
            return None
        key = options.get("key", self.session.key)
        return {
            "signature_scheme": self.session.signature_scheme,
            **options,
            "key": key.decode() if isinstance(key, bytes) else key,
        }

    # -- connection --------------------------------------------------------------
    def load_connection_file(self, connection_file: str | os.PathLike[str] | None = None) -> None:
        """Load and validate a connection file (default: ``self.connection_file``)."""
        path = connection_file if connection_file is not None else self.connection_file
        if path is None:
            raise ValueError("no connection file given")
        info = load_connection_file(path)
        self.connection_file = os.fspath(path)
        self._use(info)

    def load_connection_info(self, info: ConnectionInfo | Mapping[str, Any]) -> None:
        """Use connection info given as a :class:`ConnectionInfo` or a connection-file dict."""
        if not isinstance(info, ConnectionInfo):
            info = load_connection_info(info)
        self._use(info)

    def _use(self, info: ConnectionInfo) -> None:
        self.connection_info = info
        self.session = Session(
            info.key_bytes, info.signature_scheme, session_id=self.session.session_id
        )

    def _info(self) -> ConnectionInfo:
        if self.connection_info is None:
            raise ClientClosed("no connection info: call load_connection_file() first")
        return self.connection_info

    @property
    def kernel_name(self) -> str:
        """The kernel name from the connection info (may be empty)."""
        return self._info().kernel_name

    @property
    def ip(self) -> str:
        """The kernel's address."""
        return self._info().ip

    @property
    def transport(self) -> str:
        """``tcp`` or ``ipc``."""
        return self._info().transport

    # -- channels ----------------------------------------------------------------
    def start_channels(
        self,
        shell: bool = True,
        iopub: bool = True,
        stdin: bool = True,
        hb: bool = True,
        control: bool = True,
    ) -> None:
        """Connect the channels (all by default). Calling it again is a no-op."""
        if self._engine is not None:
            return
        if self.connection_info is None and self._transport_factory is None:
            # A manager's client made before its kernel started: take the info now.
            info = getattr(self.parent, "kernelwire_connection_info", None)
            if callable(info) and info() is not None:
                self.load_connection_info(info())
        wanted: dict[ChannelName, bool] = {
            "shell": shell,
            "iopub": iopub,
            "stdin": stdin,
            "control": control,
            "hb": hb,
        }
        channels = [name for name, on in wanted.items() if on]
        heartbeat = Heartbeat(self.heartbeat_interval, self.time_to_dead)
        transport: Transport[Any]
        if self._transport_factory is not None:
            transport = self._transport_factory(channels, self.session)
        else:
            transport = ZmqTransport(
                self._info(),
                self.session,
                channels,
                self.context,
                max_frame_bytes=_engine.MAX_MESSAGE_BYTES,  # read now: tests lower it
            )
        engine = self._engine_class(
            transport, self.session, heartbeat=heartbeat, max_unclaimed=self.max_unclaimed
        )
        self._engine = engine
        # A client dropped without stop_channels() still closes its sockets.
        self._finalizer = weakref.finalize(self, engine.close)
        attach = getattr(self.parent, "kernelwire_attach_client", None)
        if callable(attach):
            attach(self)  # the manager's death checks and restarts cover this client

    def stop_channels(self) -> None:
        """Close every channel. Queued, unread messages are discarded with the sockets."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def _set_aside_startup_output(self) -> None:
        """Move the queued IOPub messages no request of this client caused (what the
        kernel printed while it started, e.g. debugpy's warnings) from the
        ``get_iopub_msg`` queue to :attr:`startup_output`.

        ``wait_for_ready`` calls this as it returns: a loop over ``get_iopub_msg`` then
        starts with the user's own first request, as with jupyter_client, which drops
        them; here they are kept, in order, in :attr:`startup_output`.
        """
        engine = self.engine
        own_session = self.session.session_id

        def move() -> None:
            queued = engine.router.unclaimed["iopub"]
            mine: list[Message] = []
            others: list[Message] = []
            for msg in queued:
                parent = msg.get("parent_header") or {}
                (mine if parent.get("session") == own_session else others).append(msg)
            if others:
                self.startup_output.extend(others)
                queued.clear()
                queued.extend(mine)

        engine.run_locked(move)

    @property
    def channels_running(self) -> bool:
        """Whether the channels are started."""
        return self._engine is not None

    @property
    def engine(self) -> EngineT:
        """The running engine; :class:`ClientClosed` when the channels are not started.

        A client made by a manager (``km.client()``) starts its channels on first use
        instead, as jupyter_client's clients open theirs lazily.
        """
        if self._engine is None:
            if callable(getattr(self.parent, "kernelwire_connection_info", None)):
                self.start_channels()
                assert self._engine is not None
                return self._engine
            raise ClientClosed("channels are not running: call start_channels() first")
        return self._engine

    @property
    def hb_channel(self) -> HeartbeatChannel:
        """The heartbeat channel."""
        return HeartbeatChannel(self)

    @property
    def router(self) -> Router:
        """The routing engine of the running channels."""
        return self.engine.router

    @property
    def unclaimed_dropped(self) -> dict[Channel, int]:
        """How many unclaimed messages each channel's queue dropped, oldest first, because
        it held ``max_unclaimed`` already: non-zero means ``get_<channel>_msg()`` no
        longer sees everything the kernel sent there."""
        return dict(self.router.dropped_from)

    # -- sending -----------------------------------------------------------------
    def _send(
        self,
        request: Request,
        claims: frozenset[Channel] | None = None,
        sink: Sink | None = None,
    ) -> tuple[Message, RequestState | None]:
        """Send ``request``; with ``claims``, route its messages on those channels to a state."""
        engine = self.engine
        msg = self.session.request_message(request)
        state = None
        if claims:
            state = engine.run_locked(
                lambda: engine.router.track(msg["msg_id"], request.msg_type, request.channel, sink)
            )
            state.claims = claims
        try:
            engine.send(request.channel, msg)
        except BaseException:
            if state is not None:
                engine.run_locked(lambda: engine.router.forget(msg["msg_id"]))
            raise
        return msg, state

    def _track(
        self,
        request: Request,
        claims: frozenset[Channel],
        on_iopub: Callable[[Message], object] | None,
    ) -> tuple[Message, RequestState]:
        """Send ``request`` and route its messages on ``claims`` to a state; with
        ``on_iopub``, its IOPub messages go to that function as they are read, the others
        to the state's events."""
        if on_iopub is None:
            msg, state = self._send(request, claims)
        else:
            # The sink exists before the state: it fills the deque the state then adopts.
            events: deque[tuple[Channel, Message]] = deque()

            def sink(channel: Channel, msg: Message) -> None:
                if channel != "iopub":
                    events.append((channel, msg))
                    return
                try:
                    on_iopub(msg)
                except Exception:  # routing goes on: one callback must not lose messages
                    log.exception("an on_iopub callback raised")

            msg, state = self._send(request, claims, sink)
            if state is not None:
                state.events = events
        assert state is not None
        return msg, state

    def send_message(self, channel: Channel, msg: Mapping[str, Any]) -> None:
        """Send a message you built yourself (e.g. with ``client.session.message``)."""
        self.engine.send(channel, msg)

    def _execute_request(
        self,
        code: str,
        silent: bool,
        store_history: bool,
        user_expressions: Mapping[str, str] | None,
        allow_stdin: bool | None,
        stop_on_error: bool,
    ) -> Request:
        if allow_stdin is None:
            allow_stdin = self.allow_stdin
        if allow_stdin and self._engine is not None and not self._engine.has_channel("stdin"):
            raise ClientClosed("allow_stdin needs the stdin channel: start_channels(stdin=True)")
        return requests.execute(
            code, silent, store_history, user_expressions, allow_stdin, stop_on_error
        )

    def _request(self, request: Request, reply: bool, timeout: float | None) -> str | ReplyT:
        """Send ``request``; return its msg_id, or its reply when ``reply`` (client-specific)."""
        raise NotImplementedError

    def _send_request(self, request: Request) -> str:
        """Send ``request`` unclaimed (its answers go to ``get_*_msg``); its msg_id."""
        return self._send(request)[0].msg_id

    # Each request method has three typed forms: ``reply=False`` (the default) gives the
    # msg_id, ``reply=True`` gives ``ReplyT`` (the reply, or an awaitable of it), and a
    # ``reply`` known only at run time gives either.
    @overload
    def execute(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
    ) -> str: ...
    @overload
    def execute(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        *,
        reply: Literal[True],
        timeout: float | None = None,
    ) -> ReplyT: ...
    @overload
    def execute(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        *,
        reply: bool,
        timeout: float | None = None,
    ) -> str | ReplyT: ...
    def execute(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        *,
        reply: bool = False,
        timeout: float | None = None,
    ) -> str | ReplyT:
        """Run ``code``; returns the msg_id, or with ``reply=True`` the ``execute_reply``
        (blocking clients) or an awaitable of it (asyncio clients)."""
        request = self._execute_request(
            code, silent, store_history, user_expressions, allow_stdin, stop_on_error
        )
        return self._request(request, reply, timeout)

    @overload
    def complete(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
    ) -> str: ...
    @overload
    def complete(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        reply: Literal[True],
        timeout: float | None = None,
    ) -> ReplyT: ...
    @overload
    def complete(
        self, code: str, cursor_pos: int | None = None, *, reply: bool, timeout: float | None = None
    ) -> str | ReplyT: ...
    def complete(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        reply: bool = False,
        timeout: float | None = None,
    ) -> str | ReplyT:
        """Ask for completions; msg_id or ``complete_reply``."""
        return self._request(requests.complete(code, cursor_pos), reply, timeout)

    @overload
    def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        detail_level: int = 0,
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
    ) -> str: ...
    @overload
    def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        detail_level: int = 0,
        *,
        reply: Literal[True],
        timeout: float | None = None,
    ) -> ReplyT: ...
    @overload
    def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        detail_level: int = 0,
        *,
        reply: bool,
        timeout: float | None = None,
    ) -> str | ReplyT: ...
    def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        detail_level: int = 0,
        *,
        reply: bool = False,
        timeout: float | None = None,
    ) -> str | ReplyT:
        """Ask for documentation; msg_id or ``inspect_reply``."""
        request = requests.inspect(code, cursor_pos, 1 if detail_level else 0)
        return self._request(request, reply, timeout)

    @overload
    def history(
        self,
        raw: bool = True,
        output: bool = False,
        hist_access_type: HistAccessType = "range",
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> str: ...
    @overload
    def history(
        self,
        raw: bool = True,
        output: bool = False,
        hist_access_type: HistAccessType = "range",
        *,
        reply: Literal[True],
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ReplyT: ...
    @overload
    def history(
        self,
        raw: bool = True,
        output: bool = False,
        hist_access_type: HistAccessType = "range",
        *,
        reply: bool,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> str | ReplyT: ...
    def history(
        self,
        raw: bool = True,
        output: bool = False,
        hist_access_type: HistAccessType = "range",
        *,
        reply: bool = False,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> str | ReplyT:
        """Ask for history; msg_id or ``history_reply``."""
        request = requests.history(raw, output, hist_access_type, **kwargs)
        return self._request(request, reply, timeout)

    @overload
    def kernel_info(
        self, *, reply: Literal[False] = False, timeout: float | None = None
    ) -> str: ...
    @overload
    def kernel_info(self, *, reply: Literal[True], timeout: float | None = None) -> ReplyT: ...
    @overload
    def kernel_info(self, *, reply: bool, timeout: float | None = None) -> str | ReplyT: ...
    def kernel_info(self, *, reply: bool = False, timeout: float | None = None) -> str | ReplyT:
        """Ask for kernel info; msg_id or ``kernel_info_reply``."""
        return self._request(requests.kernel_info(), reply, timeout)

    @overload
    def comm_info(
        self,
        target_name: str | None = None,
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
    ) -> str: ...
    @overload
    def comm_info(
        self, target_name: str | None = None, *, reply: Literal[True], timeout: float | None = None
    ) -> ReplyT: ...
    @overload
    def comm_info(
        self, target_name: str | None = None, *, reply: bool, timeout: float | None = None
    ) -> str | ReplyT: ...
    def comm_info(
        self, target_name: str | None = None, *, reply: bool = False, timeout: float | None = None
    ) -> str | ReplyT:
        """Ask for open comms; msg_id or ``comm_info_reply``."""
        return self._request(requests.comm_info(target_name), reply, timeout)

    @overload
    def is_complete(
        self, code: str, *, reply: Literal[False] = False, timeout: float | None = None
    ) -> str: ...
    @overload
    def is_complete(
        self, code: str, *, reply: Literal[True], timeout: float | None = None
    ) -> ReplyT: ...
    @overload
    def is_complete(
        self, code: str, *, reply: bool, timeout: float | None = None
    ) -> str | ReplyT: ...
    def is_complete(
        self, code: str, *, reply: bool = False, timeout: float | None = None
    ) -> str | ReplyT:
        """Ask whether ``code`` is complete; msg_id or ``is_complete_reply``."""
        return self._request(requests.is_complete(code), reply, timeout)

    @overload
    def shutdown(
        self,
        restart: bool = False,
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
    ) -> str: ...
    @overload
    def shutdown(
        self, restart: bool = False, *, reply: Literal[True], timeout: float | None = None
    ) -> ReplyT: ...
    @overload
    def shutdown(
        self, restart: bool = False, *, reply: bool, timeout: float | None = None
    ) -> str | ReplyT: ...
    def shutdown(
        self, restart: bool = False, *, reply: bool = False, timeout: float | None = None
    ) -> str | ReplyT:
        """Ask the kernel to shut down (on control); msg_id or ``shutdown_reply``."""
        return self._request(requests.shutdown(restart), reply, timeout)

    @overload
    def interrupt(self, *, reply: Literal[False] = False, timeout: float | None = None) -> str: ...
    @overload
    def interrupt(self, *, reply: Literal[True], timeout: float | None = None) -> ReplyT: ...
    @overload
    def interrupt(self, *, reply: bool, timeout: float | None = None) -> str | ReplyT: ...
    def interrupt(self, *, reply: bool = False, timeout: float | None = None) -> str | ReplyT:
        """Send ``interrupt_request`` on control (for ``interrupt_mode: message`` kernels)."""
        return self._request(requests.interrupt(), reply, timeout)

    @overload
    def debug_request(
        self,
        content: Mapping[str, Any],
        *,
        reply: Literal[False] = False,
        timeout: float | None = None,
    ) -> str: ...
    @overload
    def debug_request(
        self, content: Mapping[str, Any], *, reply: Literal[True], timeout: float | None = None
    ) -> ReplyT: ...
    @overload
    def debug_request(
        self, content: Mapping[str, Any], *, reply: bool, timeout: float | None = None
    ) -> str | ReplyT: ...
    def debug_request(
        self, content: Mapping[str, Any], *, reply: bool = False, timeout: float | None = None
    ) -> str | ReplyT:
        """Send a Debug Adapter Protocol request on control."""
        return self._request(requests.debug(content), reply, timeout)

    @overload
    def create_subshell(
        self, *, reply: Literal[False] = False, timeout: float | None = None
    ) -> str: ...
    @overload
    def create_subshell(self, *, reply: Literal[True], timeout: float | None = None) -> ReplyT: ...
    @overload
    def create_subshell(self, *, reply: bool, timeout: float | None = None) -> str | ReplyT: ...
    def create_subshell(self, *, reply: bool = False, timeout: float | None = None) -> str | ReplyT:
        """Create a subshell (protocol 5.5); ``create_subshell_reply`` has its ``subshell_id``."""
        return self._request(requests.create_subshell(), reply, timeout)

    @overload
    def list_subshell(
        self, *, reply: Literal[False] = False, timeout: float | None = None
    ) -> str: ...
    @overload
    def list_subshell(self, *, reply: Literal[True], timeout: float | None = None) -> ReplyT: ...
    @overload
    def list_subshell(self, *, reply: bool, timeout: float | None = None) -> str | ReplyT: ...
    def list_subshell(self, *, reply: bool = False, timeout: float | None = None) -> str | ReplyT:
        """List subshells (protocol 5.5)."""
        return self._request(requests.list_subshell(), reply, timeout)

    @overload
    def delete_subshell(
        self, subshell_id: str, *, reply: Literal[False] = False, timeout: float | None = None
    ) -> str: ...
    @overload
    def delete_subshell(
        self, subshell_id: str, *, reply: Literal[True], timeout: float | None = None
    ) -> ReplyT: ...
    @overload
    def delete_subshell(
        self, subshell_id: str, *, reply: bool, timeout: float | None = None
    ) -> str | ReplyT: ...
    def delete_subshell(
        self, subshell_id: str, *, reply: bool = False, timeout: float | None = None
    ) -> str | ReplyT:
        """Delete a subshell (protocol 5.5)."""
        return self._request(requests.delete_subshell(subshell_id), reply, timeout)

    def comm_open(
        self,
        target_name: str,
        data: Mapping[str, Any] | None = None,
        comm_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Open a comm to ``target_name``; returns the msg_id (the comm id is in its content)."""
        request = requests.comm_open(comm_id or uuid.uuid4().hex, target_name, data, **kwargs)
        return self._send_request(request)

    def comm_msg(self, comm_id: str, data: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
        """Send data on an open comm; returns the msg_id."""
        return self._send_request(requests.comm_msg(comm_id, data, **kwargs))

    def comm_close(self, comm_id: str, data: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
        """Close a comm; returns the msg_id."""
        return self._send_request(requests.comm_close(comm_id, data, **kwargs))

    def input(self, string: str) -> None:
        """Answer the kernel's pending ``input_request`` with ``string``."""
        self._send(requests.input_reply(string))

    def submit(
        self, request: Request, *, claims: frozenset[Channel] = ALL_CLAIMS
    ) -> PendingBase[EngineT]:
        """Send ``request`` and return a handle that receives exactly its messages."""
        raise NotImplementedError

    def _submit(
        self,
        request: Request,
        claims: frozenset[Channel],
        kind: Callable[[Any, Message, RequestState], PendingT],
        on_iopub: Callable[[Message], object] | None = None,
    ) -> PendingT:
        msg, state = self._track(request, claims, on_iopub)
        return kind(self, msg, state)

    # -- the waiting algorithms, as steps (each client runs them its own way) ----------
    def _reply_steps(self, request: Request, timeout: float | None) -> Steps[Message]:
        """Send ``request`` and wait for its reply (handed over: not requeued)."""
        pending = self.submit(request, claims=REPLY_CLAIMS)
        try:
            return (yield from pending._reply_steps(timeout))
        finally:
            pending.discard()

    def _interactive_steps(
        self,
        request: Request,
        timeout: float | None,
        output_hook: Hook | None,
        stdin_hook: Hook | None,
    ) -> Steps[Message]:
        pending = self.submit(request)
        if stdin_hook is None:
            stdin_hook = make_stdin_hook(self.input, terminal_stdin)
        try:
            return (
                yield from pending._wait_steps(timeout, output_hook or print_output, stdin_hook)
            )
        finally:
            pending.close()

    def _take_now(self, channel: Channel) -> Message | None:
        """The oldest unclaimed ``channel`` message already read, without waiting (the
        hot path of ``get_iopub_msg`` in a flood: no steps to run)."""
        engine = self.engine
        engine.watch(channel)
        waiting = engine.router.unclaimed[channel]
        if waiting and engine.router.unclaimed_sink is None:
            return waiting.popleft()  # deque.popleft is atomic
        return None

    def _unclaimed_steps(self, channel: Channel, timeout: float | None) -> Steps[Message]:
        """The next unclaimed ``channel`` message; ``queue.Empty`` after ``timeout``."""
        msg = self._take_now(channel)
        if msg is not None:
            return msg
        engine = self.engine
        try:
            taken: Message = yield Wait(take_unclaimed(engine.router, channel), timeout)
        except KernelTimeout:
            raise queue.Empty from None
        return taken

    def _alive_steps(self) -> Steps[bool]:
        """Whether the kernel answers its heartbeat (waits up to ``time_to_dead``)."""
        engine = self._engine
        if engine is None:
            return False
        router, heartbeat = engine.router, engine.heartbeat
        if not engine.has_channel("hb") or heartbeat.beating(time.monotonic()):
            return router.death is None

        def answered() -> bool | None:
            if router.death is not None:
                return False
            return True if heartbeat.beating(time.monotonic()) else None

        try:
            alive: bool = yield Wait(answered, self.time_to_dead)
        except KernelTimeout:
            return False
        return alive

    def _join_steps(self, timeout: float | None) -> Steps[None]:
        """Wait until IOPub is joined, if this connection still needs it."""
        engine = self.engine
        if engine.begin_join():
            yield Wait(engine.core.join_done, timeout)

    def _ready_steps(self, timeout: float | None) -> Steps[Message]:
        """Wait until the kernel answers ``kernel_info`` and IOPub is connected.

        IOPub counts as connected when the kernel's ``iopub_welcome`` (protocol 5.5)
        has arrived, or else when a status message for our request has.
        """
        if self._engine is None:
            self.start_channels()
        left = time_left(timeout)
        engine = self.engine
        probes: list[PendingBase[EngineT]] = []
        try:
            while True:
                yield from self._join_steps(left())
                welcomed_before = engine.router.iopub_welcomed
                probe = self.submit(requests.kernel_info())
                probes.append(probe)
                try:
                    reply = yield from probe._reply_steps(left())
                except ReplyLost:
                    # Its idle came without the reply within the grace: the kernel runs.
                    # Under heavy load a reply can trail its idle that long; ask again.
                    continue
                if not engine.has_channel("iopub"):
                    return reply
                if not welcomed_before:
                    # Our statuses may have gone out before IOPub was subscribed: wait until
                    # it is. Without our idle by then, the next probe's statuses are certain.
                    try:
                        yield Wait(iopub_joined(engine.router), min(1.0, left() or 1))
                    except KernelTimeout:
                        if left() == 0.0:
                            raise
                        continue
                    if not probe._state.idle:
                        continue
                # This probe's idle came: every earlier probe's statuses came before it.
                while (yield from probe._next(left)) is not None:
                    pass
                self._set_aside_startup_output()
                return reply
        except KernelTimeout:
            raise KernelTimeout(f"kernel did not become ready within {timeout:g} s") from None
        finally:
            for probe in probes:
                probe.discard()  # probes' own messages are not the user's

    def __repr__(self) -> str:
        where = self.connection_file or (
            self.connection_info.url("shell") if self.connection_info else "unconnected"
        )
        state = "running" if self._engine is not None else "stopped"
        return f"<{type(self).__name__} {where} {state}>"


ChannelT = TypeVar("ChannelT")


class ChannelOf(Generic[ChannelT]):
    """A client property giving its ``name`` channel, made by ``kind(client, name)``."""

    def __init__(self, kind: Callable[[Any, Channel], ChannelT], name: Channel) -> None:
        self.kind = kind
        self.name = name
        self.__doc__ = f"The {name} channel."

    def __get__(self, client: Any, owner: type[Any] | None = None) -> ChannelT:
        return self.kind(client, self.name)


class ChannelBase:
    """One channel of a client, with jupyter_client's channel methods."""

    def __init__(self, client: KernelClientBase[Any, Any], name: Channel) -> None:
        self.client = client
        self.name = name

    def _all_steps(self) -> Steps[list[Message]]:
        out: list[Message] = []
        while True:
            try:
                out.append((yield from self.client._unclaimed_steps(self.name, 0.0)))
            except queue.Empty:
                return out

    def _ready_steps(self) -> Steps[bool]:
        engine = self.client.engine
        engine.watch(self.name)
        waiting = engine.router.unclaimed[self.name]
        if waiting:
            return True
        try:
            yield Wait(lambda: True if waiting else None, 0.0)  # reads what is there
        except KernelTimeout:
            return False
        return True

    def send(self, msg: Mapping[str, Any]) -> None:
        """Send a message you built (``client.session.message(...)``) on this channel."""
        self.client.send_message(self.name, msg)

    def is_alive(self) -> bool:
        """Whether the channel is open."""
        engine = self.client._engine
        return engine is not None and engine.has_channel(self.name)

    def start(self) -> None:
        """Channels start with the client; kept for jupyter_client compatibility."""

    def stop(self) -> None:
        """Channels stop with the client; kept for jupyter_client compatibility."""

    close = stop


class HeartbeatChannel:
    """The heartbeat channel: ``is_beating()``, ``pause()``, ``unpause()``."""

    def __init__(self, client: KernelClientBase[Any, Any]) -> None:
        self.client = client

    @property
    def time_to_dead(self) -> float:
        """Seconds without a pong before the kernel counts as dead."""
        return self.client.time_to_dead

    def is_beating(self) -> bool:
        """Whether the last pong is recent and heartbeats are not paused."""
        engine = self.client._engine
        if engine is None or engine.heartbeat.paused or engine.router.death is not None:
            return False
        return bool(engine.heartbeat.beating(time.monotonic()))

    def is_alive(self) -> bool:
        """Whether the heartbeat channel is open."""
        engine = self.client._engine
        return engine is not None and engine.has_channel("hb")

    def pause(self) -> None:
        """Stop pinging (e.g. while the kernel restarts)."""
        self.client.engine.pause_liveness()

    def unpause(self) -> None:
        """Resume pinging."""
        self.client.engine.resume_liveness()

    def start(self) -> None:
        """Kept for jupyter_client compatibility."""

    def stop(self) -> None:
        """Kept for jupyter_client compatibility."""
