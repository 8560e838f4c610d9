"""What an engine needs from a transport, and from the transport's wire codec.

An engine (:mod:`kernelwire.client._engine`) is given a :class:`Transport` (as an
httpx client is given its transport) and never builds one: the same engine runs over
ZeroMQ (:class:`~kernelwire.transports.zmq.ZmqTransport`) and over a Jupyter Server
WebSocket (:class:`~kernelwire.transports.websocket.WebSocketTransport`), and the
core's unit tests run it over a fake.

A transport moves *units*: whatever one message is on its wire (a ZeroMQ multipart
list, a WebSocket frame). Its :class:`WireCodec` turns units into messages and back,
without I/O; the engine's core uses the codec, the engine's driver the transport.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, TypeVar

from ..protocol.connection import ChannelName
from ..protocol.message import Channel, Message

UnitT = TypeVar("UnitT")
"""What one message is on a wire: a ZeroMQ multipart list, a WebSocket frame."""

Waitable = Any
"""What a driver waits on: a ZeroMQ socket or a file descriptor (``zmq.Poller`` takes both;
an asyncio loop's reader takes :func:`fileno` of it)."""


def fileno(waitable: Waitable) -> int:
    """The file descriptor an asyncio loop can watch for ``waitable``."""
    return waitable if isinstance(waitable, int) else int(waitable.FD)


class WireCodec(Protocol[UnitT]):
    """Turns one transport's units into messages and back; pure (no I/O)."""

    def encode(self, channel: ChannelName, msg: Mapping[str, Any]) -> UnitT:
        """The unit that carries ``msg`` on ``channel``."""

    def decode(self, channel: Channel, unit: UnitT) -> tuple[Channel, Message] | None:
        """``(channel, message)`` from a unit read on ``channel``; ``None`` for a unit to
        drop silently (a duplicate replayed after a reconnect). Raises
        :class:`~kernelwire.errors.ProtocolError` for a unit that is not a valid message."""

    def ping(self, payload: bytes) -> UnitT:
        """The heartbeat unit carrying ``payload``."""

    def pong(self, unit: UnitT) -> bytes:
        """The payload a heartbeat echo carries."""


class Transport(Protocol[UnitT]):
    """One kernel's channels on some wire. Every method is non-blocking.

    ``send`` returns False, having sent nothing, when the wire cannot take the unit
    now (no peer yet, a full queue): the engine keeps it and tries again. ``drain`` reads
    what is ready for the channel's :meth:`waitable` (several channels may share one,
    as on a WebSocket; then it reads every channel's units, and the codec says which
    channel each is on). :meth:`dropped` reports connection events since the last call;
    :attr:`lost` says why the transport cannot go on (a reconnect that failed).
    """

    @property
    def codec(self) -> WireCodec[UnitT]:
        """The transport's codec."""

    @property
    def channels(self) -> frozenset[ChannelName]:
        """The open channels."""

    @property
    def needs_iopub_join(self) -> bool:
        """Whether a fresh IOPub subscription may miss messages (ZeroMQ's slow joiner)."""

    @property
    def lost(self) -> str | None:
        """Why the transport cannot go on (``None``: it can)."""

    @property
    def drained(self) -> bool:
        """Whether the last :meth:`drain` left nothing behind: an edge-triggered reader
        drains again while it is off (a drain stops at a batch's count or bytes)."""

    def where(self, channel: ChannelName) -> str:
        """Where ``channel`` goes, for messages (a URL)."""

    def send(self, channel: ChannelName, unit: UnitT) -> bool:
        """Send one unit on ``channel``; False if it cannot be taken now."""

    def drain(self, channel: ChannelName) -> list[UnitT]:
        """Units ready on ``channel``'s waitable (at most a batch; call again while not
        :attr:`drained`)."""

    def waitable(self, channel: ChannelName) -> Waitable:
        """What becomes readable when ``channel`` has units."""

    def event_waitables(self) -> Collection[Waitable]:
        """What becomes readable when :meth:`dropped` has something to say."""

    def dropped(self, now: float) -> list[ChannelName]:
        """Channels whose connection dropped since the last call (``now`` is the time):
        the engine reconnects each but the heartbeat's (:meth:`reconnect`). Finding out
        may read a channel's state, consuming an edge-triggered waitable's edge: an
        event-loop driver reads every channel afterwards."""

    def next_check(self) -> float | None:
        """Seconds after which :meth:`dropped` is to be called again although no event
        came (a verdict that needs time), or ``None``."""

    def stalled(self) -> str | None:
        """Why no answer may be coming now (a connection being re-established), for a
        timeout's message; ``None`` when nothing is known to be wrong."""

    def reconnect(self, channel: ChannelName) -> list[ChannelName]:
        """Replace ``channel``'s connection (its waitable changes); returns the channels
        replaced (others may have to come back with it)."""

    def check_open(self) -> None:
        """Raise :class:`~kernelwire.errors.ClientClosed` if a channel was closed under us."""

    def close(self) -> None:
        """Close every channel (idempotent)."""


BATCH = 256
"""How many units one :meth:`Transport.drain` returns at most before yielding."""
