"""Transports: they move a kernel's messages on some wire, and interpret nothing.

:class:`~kernelwire.transports.base.Transport` is what an engine needs; a client is
given one with ``transport_factory=`` (ZeroMQ by default). The WebSocket transport is in
:mod:`kernelwire.transports.websocket` (imported there, as it needs ``websockets``).
"""

from .base import Transport, WireCodec
from .zmq import ZmqCodec, ZmqTransport

__all__ = ["Transport", "WireCodec", "ZmqCodec", "ZmqTransport"]
