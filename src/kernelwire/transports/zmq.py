"""ZeroMQ transport: the five kernel channels as sockets. It moves frames, nothing more.

Shell, control and stdin are DEALER sockets sharing one routing identity (the kernel
sends ``input_request`` to the identity that sent the ``execute_request``); IOPub is
a SUB socket subscribed to everything; the heartbeat is a DEALER that sends an empty
delimiter frame so both echo styles (ROUTER device, REP) answer it.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..errors import ClientClosed, ProtocolError
from ..protocol.codec import Session
from ..protocol.connection import ChannelName, ConnectionInfo
from ..protocol.message import Channel, Message
from .base import BATCH

_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_RECV = zmq.Socket.recv
# EVENTS is an int option: typed so, to skip a per-call int() on the hot path.
_GET = cast(Callable[[zmq.Socket[bytes], int], int], zmq.Socket.get)
_SEND = zmq.Socket.send
_SNDMORE = int(zmq.SNDMORE)

WELCOME_TOPIC_PREFIX = b"kernelwire-welcome."
"""IOPub topic prefix each client subscribes to (with its session id) besides everything."""
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_MONITORED_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | _HANDSHAKE_FAILED
_DROPPABLE: tuple[ChannelName, ...] = ("shell", "control", "stdin")
"""The DEALER channels whose connection ZeroMQ drops for good after an oversized message."""
LOST_AFTER = 0.1
"""Seconds after one of those channels' connections dropped before it is judged: by then
ZeroMQ has either kept the socket's queue for a reconnect of its own (a kernel that died
or restarts), or torn it down for good (it refused an oversized message)."""
log = logging.getLogger("kernelwire.transport")
RECONNECT_INTERVAL_MS = 10
"""Milliseconds between ZeroMQ's tries to connect a socket (its default is 100)."""
RECV_BATCH = BATCH
"""How many messages one drain of a socket reads at most before yielding."""
RECV_BATCH_BYTES = 4 * 1024 * 1024
"""How many bytes one drain reads at most (it stops after the message that passes it).
A batch is held whole until it is routed: 256 messages of 1 MiB each were 256 MiB at once,
most of the client's peak on a large stream read through ``run(max_output_chars=...)``."""


def _new_context() -> zmq.Context[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    # ZeroMQ's default of 1023 sockets per context ran out near 100 kernels (a client is
    # 5 sockets and its monitors). Raise it to what the descriptor limit allows; ZeroMQ
    # reads the option only before the context's first socket, so a context the program
    # had already used keeps its own limit (setting it later is harmless).
    descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    wanted = context.get(zmq.SOCKET_LIMIT)
    if descriptors != resource.RLIM_INFINITY:
        wanted = min(wanted, descriptors)
    if wanted > context.get(zmq.MAX_SOCKETS):
        with contextlib.suppress(zmq.ZMQError):
            context.set(zmq.MAX_SOCKETS, wanted)
    return context


class ZmqCodec:
    """Multipart frames <-> messages under a :class:`Session` (signatures, replays), with
    a size limit, refusing replies to another session (see :meth:`decode`)."""

    def __init__(self, session: Session, max_bytes: int | None = None) -> None:
        self.session = session
        self.max_bytes = max_bytes

    def encode(self, channel: ChannelName, msg: Mapping[str, Any]) -> list[Any]:
        """The signed frames of ``msg``."""
        return self.session.encode(msg)

    def decode(self, channel: Channel, unit: list[bytes]) -> tuple[Channel, Message]:
        """The message in ``unit``, read on ``channel``; :class:`ProtocolError` if refused."""
        limit = self.max_bytes
        if limit is not None and sum(map(len, unit)) > limit:
            raise ProtocolError(f"oversized message: more than {limit} bytes")
        msg = self.session.decode(unit)[1]
        if channel != "iopub":
            # Replies and input requests answer *our* requests: another session's are
            # not for us (IOPub is a broadcast and carries every session's).
            session = msg["parent_header"].get("session")
            if session is not None and session != self.session.session_id:
                raise ProtocolError(f"reply to another session ({session!r})")
        return channel, msg

    def ping(self, payload: bytes) -> list[bytes]:
        """An empty delimiter frame first, so both echo styles (ROUTER, REP) answer."""
        return [b"", payload]

    def pong(self, unit: list[bytes]) -> bytes:
        """The echoed payload (the last frame)."""
        return unit[-1]


class ZmqTransport:
    """Connected sockets for the channels of one kernel (a
    :class:`~kernelwire.transports.base.Transport`).

    ``channels`` says which to open (default: all five). The transport never
    interprets frames; :meth:`drain` returns raw multipart lists, which its
    :attr:`codec` decodes.
    """

    needs_iopub_join = True
    lost: str | None = None

    def __init__(
        self,
        info: ConnectionInfo,
        session: Session,
        channels: Iterable[ChannelName] = ("shell", "iopub", "stdin", "control", "hb"),
        context: zmq.Context[Any] | None = None,
        max_frame_bytes: int | None = None,
    ) -> None:
        self.info = info
        self.codec = ZmqCodec(session, max_frame_bytes)
        identity = session.bsession
        self.max_frame_bytes = max_frame_bytes
        self.context = context or _new_context()
        self.sockets: dict[ChannelName, zmq.Socket[bytes]] = {}
        self.drained = True
        """Whether the last :meth:`drain` left its socket empty."""
        self.closed = False
        self._client_keys = zmq.curve_keypair() if info.curve_publickey else (b"", b"")
        self._identity = identity
        self._base_identity = identity
        self._renewals = 0
        # Connection monitors (EVENT_DISCONNECTED): IOPub's, to reconnect after ZeroMQ drops
        # an oversized message's connection; the heartbeat's, to learn at once that the
        # kernel's process closed its sockets (it died, or is restarting).
        self.monitors: dict[ChannelName, zmq.Socket[bytes]] = {}
        self._refused: dict[ChannelName, bool] = {}
        self._down_since: dict[ChannelName, float] = {}
        self._refusal_logged = False
        try:
            for channel in channels:
                self.sockets[channel] = self._connect(channel, identity)
        except BaseException:
            self.close()
            raise
        self.channels = frozenset(self.sockets)
        self.channel_of: dict[zmq.Socket[bytes], ChannelName] = {
            sock: name for name, sock in self.sockets.items()
        }
        # Sockets are not thread-safe: whoever sends or receives holds this lock.
        self.lock = threading.Lock()

    def where(self, channel: ChannelName) -> str:
        """The URL of ``channel``."""
        return self.info.url(channel)

    def waitable(self, channel: ChannelName) -> zmq.Socket[bytes]:
        """The socket of ``channel`` (a poller or a loop reader waits on it)."""
        return self.socket(channel)

    def event_waitables(self) -> Collection[zmq.Socket[bytes]]:
        """The connection monitors (readable when :meth:`dropped` has news)."""
        return list(self.monitors.values())

    def dropped(self, now: float) -> list[ChannelName]:
        """The channels whose connection dropped since the last call: the heartbeat's and
        IOPub's whenever theirs did; shell, control and stdin once ZeroMQ gave theirs up
        (see :meth:`given_up`), with a new identity taken for their reconnection (see
        :meth:`renew_identity`)."""
        monitored: tuple[ChannelName, ...] = ("hb", "iopub")
        dropped = [channel for channel in monitored if self.was_disconnected(channel)]
        lost = [channel for channel in _DROPPABLE if self.given_up(channel, now)]
        if lost:
            self.renew_identity()
        return dropped + lost

    def next_check(self) -> float | None:
        """Seconds after which :meth:`dropped` has a verdict due although no connection
        event comes (``None``: none awaited); see :meth:`given_up`."""
        return LOST_AFTER if self._down_since else None

    def stalled(self) -> str | None:
        """Nothing to say: ZeroMQ reconnects by itself, and a lost peer is judged by the
        heartbeat."""
        return None

    def check_open(self) -> None:
        """:class:`ClientClosed` if a socket was closed under us."""
        for channel, sock in self.sockets.items():
            if sock.closed:
                raise ClientClosed(f"the {channel} socket of this client was closed under it")

    def _connect(self, channel: ChannelName, identity: bytes) -> zmq.Socket[bytes]:
        kind = zmq.SUB if channel == "iopub" else zmq.DEALER
        sock: zmq.Socket[bytes] = self.context.socket(kind)
        sock.linger = 0
        # Retry a connection every 10 ms, not ZeroMQ's 100: a kernel that is starting
        # or restarting binds its ports at some moment, and we want to be there at once.
        sock.reconnect_ivl = RECONNECT_INTERVAL_MS
        if channel == "iopub":
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            # And a topic of our own: a kernel's XPUB socket reports only topics new to it,
            # so a second client subscribing to b"" alone gets no iopub_welcome (5.5).
            sock.setsockopt(zmq.SUBSCRIBE, WELCOME_TOPIC_PREFIX + identity)
            # Keep every published message: the client, not ZeroMQ, decides what to drop.
            sock.rcvhwm = 0
        elif channel != "hb":
            sock.identity = identity
        if channel != "hb" and self.max_frame_bytes is not None:
            # ZeroMQ refuses a larger frame before it is held in memory, so a kernel that
            # sends one huge message cannot exhaust ours; it drops the connection and
            # does not reconnect, so we watch for that and reconnect ourselves.
            sock.maxmsgsize = self.max_frame_bytes
            self.monitors[channel] = sock.get_monitor_socket(_MONITORED_EVENTS)
        elif channel == "hb":
            self.monitors[channel] = sock.get_monitor_socket(_MONITORED_EVENTS)
            # Queue a ping only to a connected kernel: one that is still starting (or
            # restarting) has no ping out, so its silence is never counted as death.
            sock.immediate = True
        if self.info.transport == "tcp":
            sock.setsockopt(zmq.IPV6, 1)
        if self.info.curve_publickey:
            # CurveZMQ: authenticate the kernel by its public key, with a key pair of our own.
            public, secret = self._client_keys
            sock.curve_serverkey = self.info.curve_publickey.encode("ascii")
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(self.info.url(channel))
        return sock

    def was_disconnected(self, channel: ChannelName) -> bool:
        """Whether ``channel``'s connection dropped since the last call (reads its monitor).

        A connection the kernel refused (a failed handshake: CurveZMQ keys that do not
        match) does not count: the kernel is alive, and it is logged instead.
        """
        monitor = self.monitors.get(channel)
        dropped = False
        if monitor is None:
            return False
        refused = self._refused.get(channel, False)
        try:
            while True:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
                if event & _HANDSHAKE_FAILED:
                    refused = True  # until a handshake succeeds
                elif event & zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    refused = False
                elif event & zmq.EVENT_DISCONNECTED and not refused:
                    dropped = True
        except zmq.Again:
            pass
        self._refused[channel] = refused
        if refused and not self._refusal_logged:
            self._refusal_logged = True
            log.warning(
                "the peer at %s refused the connection (handshake failed): either the "
                "kernel encrypts with CurveZMQ and the connection file %s, or what answers "
                "on that port is not this kernel's %s socket",
                self.info.url(channel),
                "carries other keys" if self.info.curve_publickey else "lacks its keys",
                channel,
            )
        return dropped

    def given_up(self, channel: ChannelName, now: float) -> bool:
        """Whether ZeroMQ gave up ``channel``'s connection for good (shell, control, stdin).

        It does so when it refuses a message over the size bound: the connection is
        dropped, and the socket is left with nowhere to send. A connection that drops
        otherwise (the kernel died or restarts) is reconnected by ZeroMQ itself, keeping
        the socket's queue. The two look alike at first: the verdict comes on a call
        :data:`LOST_AFTER` seconds or more after the drop (see :attr:`judging`).
        """
        sock = self.sockets.get(channel)
        if channel not in _DROPPABLE or sock is None:
            return False
        if self.was_disconnected(channel):
            self._down_since.setdefault(channel, now)
        since = self._down_since.get(channel)
        if since is None or now - since < LOST_AFTER:
            return False
        del self._down_since[channel]
        # A socket whose peer went away still queues (ZeroMQ reconnects it), unless its
        # queue is full; one whose connection ZeroMQ tore down has no queue at all. The
        # first read lets ZeroMQ finish processing the teardown. Reading EVENTS consumes
        # the socket's FD edge: an event loop must read the socket afterwards.
        _GET(sock, _EVENTS)
        return not _GET(sock, _EVENTS) & _POLLOUT

    def renew_identity(self) -> bytes:
        """Take a new routing identity for the sockets connected from now on; returns it.

        A kernel forgets a dropped connection's identity only once its socket gets to
        it (a busy kernel may not for a while), and ZeroMQ's ROUTER ignores, for good, a
        second peer under an identity in use: a socket coming back under the old one
        could be refused for as long as it lives.
        """
        self._renewals += 1
        self._identity = self._base_identity + b"." + str(self._renewals).encode()
        return self._identity

    def reconnect(self, channel: ChannelName) -> list[ChannelName]:
        """Replace ``channel``'s socket with a freshly connected one (under the current
        identity, see :meth:`renew_identity`); returns the channels replaced.

        Shell and stdin are replaced together: the kernel sends an ``input_request`` to
        the identity that sent the ``execute_request``.
        """
        paired: tuple[ChannelName, ...] = ("shell", "stdin")
        replaced = [name for name in paired if name in self.sockets]
        if channel not in paired:
            replaced = [channel]
        for name in replaced:
            self._replace(name)
        return replaced

    def _replace(self, channel: ChannelName) -> None:
        old = self.sockets.pop(channel)
        self.channel_of.pop(old, None)
        self._down_since.pop(channel, None)
        self._close_monitor(channel, old)
        old.close(linger=0)
        sock = self._connect(channel, self._identity)
        self.sockets[channel] = sock
        self.channel_of[sock] = channel

    def _close_monitor(self, channel: ChannelName, sock: zmq.Socket[bytes] | None) -> None:
        monitor = self.monitors.pop(channel, None)
        if monitor is None:
            return
        if sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
        monitor.close(linger=0)

    def socket(self, channel: ChannelName) -> zmq.Socket[bytes]:
        """The socket of ``channel``; :class:`ClientClosed` if it is not open."""
        try:
            return self.sockets[channel]
        except KeyError:
            state = "closed" if self.closed else "not started"
            raise ClientClosed(f"the {channel} channel is {state}") from None

    def send(self, channel: ChannelName, frames: Sequence[Any]) -> bool:
        """Send one multipart message on ``channel`` without blocking.

        Returns False, having sent nothing, when ZeroMQ cannot take the message now: no
        peer is connected (a refused CurveZMQ handshake leaves none) or its queue is
        full. A blocking send would wait forever in that case.
        """
        sock = self.socket(channel)
        # The backend's send with int flags: send_multipart's enum arithmetic costs
        # about three times the send itself for a small message.
        send = _SEND
        last = len(frames) - 1
        try:
            send(sock, frames[0], _NOBLOCK | _SNDMORE if last else _NOBLOCK)
        except zmq.Again:
            return False
        # Once the first frame is queued, ZeroMQ takes the rest of the message.
        for index in range(1, last):
            send(sock, frames[index], _SNDMORE)
        if last:
            send(sock, frames[last], 0)
        return True

    def drain(self, channel: ChannelName, limit: int = RECV_BATCH) -> list[list[bytes]]:
        """Read up to ``limit`` waiting multipart messages (and about
        :data:`RECV_BATCH_BYTES`) from ``channel`` without blocking.

        Call it when a poll or the socket's FD said it has a message: the first is read
        without asking again (if there is none, nothing is read). :attr:`drained` says
        afterwards whether the socket was left empty (an edge-triggered reader must read
        again if not).
        """
        sock = self.sockets.get(channel)
        out: list[list[bytes]] = []
        self.drained = True
        if sock is None:
            return out
        # The hot path, shaped by measurement. Asking ZeroMQ whether more is waiting
        # (EVENTS) costs a system call, so the first message is read without asking;
        # after it, asking is cheaper than a failed read's zmq.Again. Frames are read as
        # Frame objects, whose ``more`` needs no RCVMORE lookup (pyzmq turns every
        # option number into an enum on each get).
        recv, get = _RECV, _GET
        try:
            frame = recv(sock, _NOBLOCK, False)
        except zmq.Again:
            return out
        size = 0
        while True:
            data = frame.bytes
            parts = [data]
            size += len(data)
            while frame.more:
                frame = recv(sock, _NOBLOCK, False)
                data = frame.bytes
                parts.append(data)
                size += len(data)
            out.append(parts)
            if not get(sock, _EVENTS) & _POLLIN:
                return out
            if len(out) >= limit or size >= RECV_BATCH_BYTES:
                self.drained = False
                return out
            frame = recv(sock, _NOBLOCK, False)

    def close(self) -> None:
        """Close every socket (idempotent)."""
        self.closed = True
        for channel in list(self.monitors):
            self._close_monitor(channel, self.sockets.get(channel))
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.sockets.clear()
