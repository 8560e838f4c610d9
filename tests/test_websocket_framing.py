"""The WebSocket framings (v1 binary and legacy), sans-I/O: round trips and hostile bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelwire.errors import ProtocolError
from kernelwire.protocol.codec import Session
from kernelwire.protocol.websocket import (
    V1_SUBPROTOCOL,
    WebSocketFraming,
    decode_legacy,
    decode_v1,
    encode_legacy,
    encode_v1,
)


def sample(buffers: list[bytes]) -> dict:  # type: ignore[type-arg]
    session = Session(b"")
    parent = session.message("execute_request", {"code": "1"})
    return session.message("comm_msg", {"data": {"é": 1}}, parent=parent, buffers=buffers)


@pytest.mark.parametrize("buffers", [[], [b"\x00\xff", b""]])
@pytest.mark.parametrize("subprotocol", [V1_SUBPROTOCOL, None])
def test_round_trip(subprotocol: str | None, buffers: list[bytes]) -> None:
    framing = WebSocketFraming(subprotocol)
    msg = sample(buffers)
    frame = framing.encode("shell", msg)
    assert isinstance(frame, bytes) if subprotocol or buffers else isinstance(frame, str)
    channel, got = framing.decode(frame)
    assert channel == "shell"
    assert got["content"] == {"data": {"é": 1}} and got["msg_id"] == msg["msg_id"]
    assert (
        got["header"]["date"].tzinfo is not None and got["parent_header"]["date"].tzinfo is not None
    )
    assert [bytes(b) for b in got["buffers"]] == buffers


def test_v1_layout() -> None:
    frame = encode_v1("iopub", sample([b"buf"]))
    (count,) = struct.unpack_from("<Q", frame)
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    assert count == 7 and offsets[0] == 8 * (count + 1) and offsets[-1] == len(frame)
    assert frame[offsets[0] : offsets[1]] == b"iopub"
    assert frame[offsets[5] : offsets[6]] == b"buf"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        struct.pack("<Q", 2**40),
        struct.pack("<Q", 3) + b"\x00" * 24,
        encode_v1("nochannel", sample([])),
        encode_v1("shell", sample([]))[:-3],
    ],
    ids=["empty", "huge-count", "few-offsets", "bad-channel", "truncated"],
)
def test_bad_v1_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_v1(frame)


@pytest.mark.parametrize(
    "frame", ["", "[]", '{"channel": "shell"}', "{not json", b"\x00\x00\x00\x05abc"]
)
def test_bad_legacy_frames(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_legacy(frame)


def test_legacy_binary_layout() -> None:
    frame = encode_legacy("iopub", sample([b"ab", b"c"]))
    assert isinstance(frame, bytes)
    (count,) = struct.unpack_from("!I", frame)
    assert count == 3


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_message_or_protocol_error(data: bytes) -> None:
    for decode in (decode_v1, decode_legacy):
        with contextlib.suppress(ProtocolError):
            decode(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_message_or_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_legacy(text)
