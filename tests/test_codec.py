"""The sans-I/O codec: round trips, signatures, replays, bad frames, jupyter_client interop."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelwire.errors import InvalidSignature, KernelwireError, ProtocolError, ReplayedMessage
from kernelwire.protocol import requests
from kernelwire.protocol.codec import DELIMITER, ReplayGuard, Session, Signer, digest_name
from kernelwire.protocol.jsonutil import parse_date

KEY = b"a-test-key"


def roundtrip(msg_session: Session, msg: dict) -> dict:  # type: ignore[type-arg]
    return Session(KEY, check_replay=False).decode(msg_session.encode(msg))[1]


def test_round_trip_keeps_every_part() -> None:
    sender = Session(KEY)
    parent = sender.message("execute_request", {"code": "1"})
    msg = sender.message(
        "display_data",
        {"data": {"text/plain": "x"}},
        parent=parent,
        metadata={"m": 1},
        buffers=[b"\x00\x01", memoryview(b"buf")],
    )
    got = roundtrip(sender, msg)
    assert got["msg_type"] == "display_data" and got["msg_id"] == msg["msg_id"]
    assert got["content"] == {"data": {"text/plain": "x"}} and got["metadata"] == {"m": 1}
    assert got["parent_header"]["msg_id"] == parent["msg_id"]
    assert [bytes(b) for b in got["buffers"]] == [b"\x00\x01", b"buf"]
    assert all(isinstance(b, memoryview) for b in got["buffers"])
    for date in (got["header"]["date"], got["parent_header"]["date"]):
        assert isinstance(date, datetime) and date.tzinfo is not None
    assert got.parent_id == parent["msg_id"]


@pytest.mark.parametrize("scheme", ["hmac-sha256", "hmac-sha512", "hmac-sha1", "hmac-md5"])
def test_signatures_match_the_hmac_module(scheme: str) -> None:
    long_key = b"k" * 300  # longer than any block: hashed first, per RFC 2104
    for key in (KEY, long_key):
        signer = Signer(key, scheme)
        frames = [b'{"a": 1}', b"{}", b"{}", b'{"text": "\\u00e9"}']
        expected = hmac.new(key, b"".join(frames), getattr(hashlib, scheme[5:])).hexdigest()
        assert signer.sign(frames) == expected.encode()
        assert signer.verify(expected.encode(), frames)
        assert not signer.verify(b"0" * len(expected), frames)


def test_empty_key_means_unsigned() -> None:
    session = Session(b"")
    frames = session.encode(session.message("kernel_info_request"))
    assert frames[1] == b""
    assert Session(b"").decode(frames)[1]["msg_type"] == "kernel_info_request"


def test_bad_signature_replay_and_broken_frames_are_refused() -> None:
    sender, receiver = Session(KEY), Session(KEY)
    frames = sender.encode(sender.message("status", {"execution_state": "idle"}))
    with pytest.raises(InvalidSignature):
        Session(b"other").decode(frames)
    receiver.decode(frames)
    with pytest.raises(ReplayedMessage):
        receiver.decode(frames)
    bad = [
        frames[:4],  # truncated
        frames[1:],  # no delimiter
        [DELIMITER, b"", b"not json", b"{}", b"{}", b"{}"],
        [DELIMITER, b"", b"[1]", b"{}", b"{}", b"{}"],
        [DELIMITER, b"", b'{"msg_type": "x"}', b"{}", b"{}", b"{}"],
    ]
    for broken in bad:
        with pytest.raises(ProtocolError):
            Session(b"").decode(broken)
    assert issubclass(ProtocolError, KernelwireError)


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(capacity=3)
    for sig in (b"a", b"b", b"c"):
        assert guard.check_and_record(sig)
    assert not guard.check_and_record(b"a")
    assert guard.check_and_record(b"d")  # evicts the oldest, "a"
    assert len(guard) == 3
    assert guard.check_and_record(b"a")


def test_unknown_schemes_are_refused_and_the_key_never_shows() -> None:
    with pytest.raises(ValueError, match="unknown hash"):
        digest_name("hmac-nope")
    with pytest.raises(ValueError, match="hmac-<hash>"):
        digest_name("sha256")
    assert "a-test-key" not in repr(Session(KEY)) and "a-test-key" not in repr(Signer(KEY))


def test_interoperates_with_jupyter_client() -> None:
    jc_session = pytest.importorskip("jupyter_client.session")
    theirs = jc_session.Session(key=KEY, signature_scheme="hmac-sha256")
    ours = Session(KEY)
    # theirs -> ours
    frames = theirs.serialize(theirs.msg("stream", {"name": "stdout", "text": "hi"}))
    msg = ours.decode(frames)[1]
    assert msg["content"]["text"] == "hi" and msg["header"]["date"].tzinfo is not None
    # ours -> theirs
    frames = ours.encode(ours.message("execute_request", {"code": "1"}))
    _, parts = theirs.feed_identities(frames)
    decoded = theirs.deserialize(parts)
    assert decoded["content"]["code"] == "1"
    assert set(decoded) >= {"header", "msg_id", "msg_type", "parent_header", "metadata", "content"}


def test_dates() -> None:
    assert parse_date("2024-05-01T12:00:00.5Z").isoformat() == "2024-05-01T12:00:00.500000+00:00"
    assert parse_date("2024-05-01T12:00:00.123456789Z").microsecond == 123456
    assert parse_date("2024-05-01T12:00:00").tzinfo is not None
    assert parse_date("not a date") == "not a date"


def test_request_constructors() -> None:
    assert requests.execute("1").channel == "shell"
    for request in (
        requests.interrupt(),
        requests.debug({}),
        requests.create_subshell(),
        requests.list_subshell(),
        requests.delete_subshell("s"),
        requests.shutdown(),
    ):
        assert request.channel == "control"
    assert requests.input_reply("x").channel == "stdin"
    assert requests.complete("abc").content["cursor_pos"] == 3
    assert requests.execute("1", subshell_id="s").subshell_id == "s"
    with pytest.raises(TypeError, match="code must be a str"):
        requests.execute(1)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=9))
def test_any_frames_decode_or_raise_protocol_error(frames: list[bytes]) -> None:
    for key in (b"", KEY):
        with contextlib.suppress(ProtocolError):
            Session(key).decode(frames)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_json_content_round_trips(content: dict) -> None:  # type: ignore[type-arg]
    sender = Session(KEY)
    assert roundtrip(sender, sender.message("comm_msg", content))["content"] == content
