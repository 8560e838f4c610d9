"""The two framings of kernel messages over a Jupyter Server WebSocket, sans-I/O.

``v1.kernel.websocket.jupyter.org`` (binary)::

    u64le n | n x u64le offsets | channel | header | parent_header | metadata | content | buffers...

where part ``i`` spans ``offsets[i]:offsets[i+1]`` and the last offset is the end.

Legacy (no subprotocol): a JSON text frame ``{"channel", "header", "parent_header",
"metadata", "content"}``; a message with buffers is a binary frame instead::

    u32be k | k x u32be offsets | JSON | buffers...

Decoding never raises anything but :class:`~kernelwire.errors.ProtocolError`.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..errors import ProtocolError
from .jsonutil import dumps
from .message import CHANNELS, Channel, Message, checked_message

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
"""The binary framing's WebSocket subprotocol name."""


def _message(
    channel: str,
    header: Any,
    parent: Any,
    metadata: Any,
    content: Any,
    buffers: Sequence[bytes | memoryview],
) -> tuple[Channel, Message]:
    if channel not in CHANNELS:
        raise ProtocolError(f"unknown channel {channel!r}")
    return channel, checked_message(header, parent, metadata, content, buffers)


def _loads(data: bytes | memoryview, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not valid JSON: {exc}") from None


def encode_v1(channel: str, msg: Mapping[str, Any]) -> bytes:
    """One message in the v1 binary framing."""
    parts = [
        channel.encode(),
        dumps(msg["header"]),
        dumps(msg.get("parent_header") or {}),
        dumps(msg.get("metadata") or {}),
        dumps(msg.get("content") or {}),
        *(bytes(b) for b in msg.get("buffers") or ()),
    ]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return head + b"".join(parts)


def decode_v1(data: bytes) -> tuple[Channel, Message]:
    """(channel, message) from a v1 binary frame."""
    if len(data) < 8:
        raise ProtocolError("v1 frame shorter than its offset count")
    (count,) = struct.unpack_from("<Q", data)
    if count < 6 or 8 * (count + 1) > len(data):
        raise ProtocolError(f"v1 frame announces {count} offsets: too few, or more than it holds")
    offsets = struct.unpack_from(f"<{count}Q", data, 8)
    if offsets[0] < 8 * (count + 1) or any(b < a for a, b in itertools.pairwise(offsets)):
        raise ProtocolError("v1 frame offsets are out of order")
    if offsets[-1] != len(data):
        raise ProtocolError("v1 frame offsets do not end at the frame's end")
    view = memoryview(data)
    parts = [view[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
    try:
        channel = bytes(parts[0]).decode()
    except UnicodeDecodeError:
        raise ProtocolError("v1 frame channel is not UTF-8") from None
    names = ("header", "parent_header", "metadata", "content")
    header, parent, metadata, content = (
        _loads(p, n) for p, n in zip(parts[1:5], names, strict=True)
    )
    return _message(channel, header, parent, metadata, content, [bytes(b) for b in parts[5:]])


def encode_legacy(channel: str, msg: Mapping[str, Any]) -> str | bytes:
    """One message in the legacy framing: JSON text, or binary when it has buffers."""
    body = {
        "channel": channel,
        "header": msg["header"],
        "parent_header": msg.get("parent_header") or {},
        "metadata": msg.get("metadata") or {},
        "content": msg.get("content") or {},
    }
    buffers = [bytes(b) for b in msg.get("buffers") or ()]
    if not buffers:
        return dumps(body).decode()
    blobs = [dumps(body), *buffers]
    offsets = [4 * (len(blobs) + 1)]
    for blob in blobs[:-1]:
        offsets.append(offsets[-1] + len(blob))
    return struct.pack(f"!{len(blobs) + 1}I", len(blobs), *offsets) + b"".join(blobs)


def decode_legacy(data: str | bytes) -> tuple[Channel, Message]:
    """(channel, message) from a legacy text or binary frame."""
    buffers: list[bytes] = []
    if isinstance(data, str):
        body = _loads(data.encode(), "legacy text frame")
    else:
        if len(data) < 4:
            raise ProtocolError("legacy binary frame shorter than its buffer count")
        (count,) = struct.unpack_from("!I", data)
        if count < 1 or 4 * (count + 1) > len(data):
            raise ProtocolError(f"legacy binary frame announces {count} buffers it does not hold")
        offsets = [*struct.unpack_from(f"!{count}I", data, 4), len(data)]
        if offsets[0] < 4 * (count + 1) or any(b < a for a, b in itertools.pairwise(offsets)):
            raise ProtocolError("legacy binary frame offsets are out of order")
        blobs = [data[offsets[i] : offsets[i + 1]] for i in range(count)]
        body = _loads(blobs[0], "legacy binary frame JSON")
        buffers = blobs[1:]
    if not isinstance(body, dict):
        raise ProtocolError("legacy frame must hold a JSON object")
    return _message(
        str(body.get("channel")),
        body.get("header"),
        body.get("parent_header"),
        body.get("metadata"),
        body.get("content"),
        buffers,
    )


class WebSocketFraming:
    """Encodes and decodes with whichever framing the server agreed to."""

    def __init__(self, subprotocol: str | None) -> None:
        self.v1 = subprotocol == V1_SUBPROTOCOL

    def encode(self, channel: str, msg: Mapping[str, Any]) -> str | bytes:
        """A frame for ``msg`` on ``channel``."""
        return encode_v1(channel, msg) if self.v1 else encode_legacy(channel, msg)

    def decode(self, frame: str | bytes) -> tuple[Channel, Message]:
        """(channel, message) from a frame; :class:`ProtocolError` if it is not one."""
        if self.v1:
            if isinstance(frame, str):
                raise ProtocolError("text frame on the v1 binary protocol")
            return decode_v1(frame)
        return decode_legacy(frame)
