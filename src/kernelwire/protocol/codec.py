"""The multipart wire codec: framing, HMAC signatures, replay guard.

A message on ZeroMQ is::

    [identities..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]

where ``signature`` is the hex HMAC of the four JSON frames under the connection's
key (empty when the key is empty). :class:`Session` turns :class:`Message` objects
into frames and back; it does no I/O.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidSignature, ProtocolError, ReplayedMessage
from .jsonutil import dumps, loads, parse_date
from .message import USERNAME, Buffer, HeaderFactory, Message
from .requests import Request

DELIMITER = b"<IDS|MSG>"
DEFAULT_SCHEME = "hmac-sha256"


def digest_name(signature_scheme: str) -> str:
    """The hashlib name in an ``hmac-<name>`` scheme, or ``ValueError`` saying why not."""
    prefix, _, name = signature_scheme.partition("-")
    if prefix != "hmac" or not name:
        raise ValueError(f"signature scheme must look like 'hmac-<hash>', got {signature_scheme!r}")
    try:
        hashlib.new(name)
    except (ValueError, TypeError):
        raise ValueError(
            f"unknown hash {name!r} in signature scheme {signature_scheme!r}"
        ) from None
    return name


class Signer:
    """Signs and checks the four JSON frames of a message with HMAC.

    An empty key means messages are unsigned (the signature frame is empty).
    """

    __slots__ = ("_digest", "_key")

    def __init__(self, key: bytes, signature_scheme: str = DEFAULT_SCHEME) -> None:
        self._key = bytes(key)
        self._digest = digest_name(signature_scheme)

    @property
    def enabled(self) -> bool:
        """Whether messages are signed (the key is not empty)."""
        return bool(self._key)

    def sign(self, frames: Sequence[bytes]) -> bytes:
        """The hex signature of ``frames`` (header, parent header, metadata, content)."""
        if not self._key:
            return b""
        return binascii.hexlify(hmac.digest(self._key, b"".join(frames), self._digest))

    def verify(self, signature: bytes, frames: Sequence[bytes]) -> bool:
        """Constant-time check of ``signature`` against ``frames``."""
        if not self._key:
            return True
        return hmac.compare_digest(signature, self.sign(frames))

    def __repr__(self) -> str:  # never show the key
        return f"Signer(hmac-{self._digest}, signed={self.enabled})"


class ReplayGuard:
    """Remembers the last ``capacity`` signatures and refuses any seen again."""

    __slots__ = ("_order", "_seen", "capacity")

    def __init__(self, capacity: int = 2**16) -> None:
        if capacity < 1:
            raise ValueError("replay guard capacity must be at least 1")
        self.capacity = capacity
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def check_and_record(self, signature: bytes) -> bool:
        """Record ``signature``; return False if it was already seen (a replay)."""
        if signature in self._seen:
            return False
        self._seen.add(signature)
        self._order.append(signature)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._order)


def _json_frame(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = loads(data)
    except ValueError as exc:
        raise ProtocolError(f"{name} frame is not valid JSON: {exc}") from None
    if value is None and name != "header":
        return {}  # some kernels (xeus) send null for an empty parent header
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} frame must be a JSON object, got {type(value).__name__}")
    return value


def split_identities(frames: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split wire frames at the delimiter: (routing identities, message frames)."""
    for index, frame in enumerate(frames):
        if frame == DELIMITER:
            return list(frames[:index]), list(frames[index + 1 :])
    raise ProtocolError("no <IDS|MSG> delimiter among the frames")


class Session:
    """One signed session with a kernel: makes, encodes and decodes messages.

    >>> session = Session(b"secret")
    >>> msg = session.message("kernel_info_request")
    >>> identities, decoded = Session(b"secret", check_replay=False).decode(session.encode(msg))
    >>> decoded["msg_type"], decoded["header"]["date"].tzinfo is not None
    ('kernel_info_request', True)
    """

    def __init__(
        self,
        key: bytes | str = b"",
        signature_scheme: str = DEFAULT_SCHEME,
        *,
        session_id: str | None = None,
        username: str = USERNAME,
        check_replay: bool = True,
        replay_capacity: int = 2**16,
    ) -> None:
        self.signer = Signer(key.encode() if isinstance(key, str) else key, signature_scheme)
        self.signature_scheme = signature_scheme
        self.headers = HeaderFactory(session_id, username)
        self.replay_guard = ReplayGuard(replay_capacity) if check_replay else None

    @property
    def session_id(self) -> str:
        """This session's id, sent in every header."""
        return self.headers.session

    @property
    def bsession(self) -> bytes:
        """The session id as bytes: the ZeroMQ routing identity of this client's sockets."""
        return self.headers.session.encode()

    def message(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None = None,
        *,
        parent: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Buffer] = (),
        subshell_id: str | None = None,
    ) -> Message:
        """A new message from this session (see :meth:`HeaderFactory.message`)."""
        return self.headers.message(
            msg_type,
            content,
            parent=parent,
            metadata=metadata,
            buffers=buffers,
            subshell_id=subshell_id,
        )

    def request_message(self, request: Request, parent: Mapping[str, Any] | None = None) -> Message:
        """The message for a :class:`~kernelwire.protocol.requests.Request`."""
        return self.headers.message(
            request.msg_type,
            request.content,
            parent=parent,
            metadata=request.metadata,
            buffers=request.buffers,
            subshell_id=request.subshell_id,
        )

    def encode(self, msg: Mapping[str, Any], identities: Sequence[bytes] = ()) -> list[Any]:
        """Wire frames for ``msg``: identities, delimiter, signature, four JSON frames, buffers."""
        parts = [
            dumps(msg["header"]),
            dumps(msg.get("parent_header") or {}),
            dumps(msg.get("metadata") or {}),
            dumps(msg.get("content") or {}),
        ]
        return [*identities, DELIMITER, self.signer.sign(parts), *parts, *msg.get("buffers", ())]

    def decode(self, frames: Sequence[bytes]) -> tuple[list[bytes], Message]:
        """Verify and decode wire frames into (identities, message).

        Raises :class:`InvalidSignature`, :class:`ReplayedMessage` or :class:`ProtocolError`;
        a message that fails any check is never returned.
        """
        identities, parts = split_identities(frames)
        if len(parts) < 5:
            raise ProtocolError(
                f"truncated message: {len(parts)} frames after the delimiter, need 5"
            )
        signature = bytes(parts[0])
        signed = parts[1:5]
        if self.signer.enabled:
            if not self.signer.verify(signature, signed):
                raise InvalidSignature("message signature does not match its content")
            if self.replay_guard is not None and not self.replay_guard.check_and_record(signature):
                raise ReplayedMessage("message signature was seen before: replayed message refused")
        header = _json_frame(signed[0], "header")
        msg_id = header.get("msg_id")
        msg_type = header.get("msg_type")
        if not isinstance(msg_id, str) or not isinstance(msg_type, str):
            raise ProtocolError("header lacks a string msg_id or msg_type")
        parent = _json_frame(signed[1], "parent_header")
        date = header.get("date")
        if isinstance(date, str):
            header["date"] = parse_date(date)
        date = parent.get("date")
        if isinstance(date, str):
            parent["date"] = parse_date(date)
        return identities, Message(
            header=header,
            msg_id=msg_id,
            msg_type=msg_type,
            parent_header=parent,
            metadata=_json_frame(signed[2], "metadata"),
            content=_json_frame(signed[3], "content"),
            buffers=[memoryview(b) for b in parts[5:]],
        )

    def __repr__(self) -> str:
        return f"Session(id={self.session_id!r}, {self.signer!r})"
