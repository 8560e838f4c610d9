"""The multipart wire codec: framing, HMAC signatures, replay guard.

A message on ZeroMQ is::

    [identities..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]

where ``signature`` is the hex HMAC of the four JSON frames under the connection's
key (empty when the key is empty). :class:`Session` turns :class:`Message` objects
into frames and back; it does no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from ..errors import InvalidSignature, ProtocolError, ReplayedMessage
from .jsonutil import dumps, loads
from .message import USERNAME, Buffer, HeaderFactory, Message, checked_message
from .requests import Request

DELIMITER = b"<IDS|MSG>"
_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY
_dumps = orjson.dumps
_loads = orjson.loads
_fromisoformat = datetime.fromisoformat
_compare_digest = hmac.compare_digest
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
    """Signs and checks the four JSON frames of a message with HMAC (RFC 2104).

    The inner and outer hash states of the key are computed once, so signing a
    message costs two hash-state copies instead of a full HMAC set-up: about twice as
    fast as ``hmac.digest`` for small messages. An empty key means messages are
    unsigned (the signature frame is empty).
    """

    __slots__ = ("_digest", "_inner", "_key", "_outer")

    def __init__(self, key: bytes, signature_scheme: str = DEFAULT_SCHEME) -> None:
        self._key = bytes(key)
        self._digest = digest_name(signature_scheme)
        template = hashlib.new(self._digest)
        block = template.block_size
        padded = (
            self._key if len(self._key) <= block else hashlib.new(self._digest, self._key).digest()
        )
        padded = padded.ljust(block, b"\0")
        self._inner = hashlib.new(self._digest, padded.translate(_IPAD))
        self._outer = hashlib.new(self._digest, padded.translate(_OPAD))

    @property
    def enabled(self) -> bool:
        """Whether messages are signed (the key is not empty)."""
        return bool(self._key)

    def sign(self, frames: Sequence[bytes]) -> bytes:
        """The hex signature of ``frames`` (header, parent header, metadata, content)."""
        if not self._key:
            return b""
        inner = self._inner.copy()
        inner.update(b"".join(frames))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode()

    def verify(self, signature: bytes, frames: Sequence[bytes]) -> bool:
        """Constant-time check of ``signature`` against ``frames``."""
        if not self._key:
            return True
        return hmac.compare_digest(bytes(signature), self.sign(frames))

    def __repr__(self) -> str:  # never show the key
        return f"Signer(hmac-{self._digest}, signed={self.enabled})"


_IPAD = bytes((x ^ 0x36) for x in range(256))
_OPAD = bytes((x ^ 0x5C) for x in range(256))


class ReplayGuard:
    """Remembers the last ``capacity`` signatures (or other ids) and refuses any seen again.

    The one replay guard: :meth:`Session.decode` keys it by HMAC signature, the
    WebSocket codec by message id (a server replays what it buffered on a reconnect).
    """

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
    try:
        index = list(frames).index(DELIMITER)
    except ValueError:
        raise ProtocolError("no <IDS|MSG> delimiter among the frames") from None
    return list(frames[:index]), list(frames[index + 1 :])


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
        try:
            parts = [
                _dumps(msg["header"], option=_DUMP_OPTIONS),
                _dumps(msg.get("parent_header") or {}, option=_DUMP_OPTIONS),
                _dumps(msg.get("metadata") or {}, option=_DUMP_OPTIONS),
                _dumps(msg.get("content") or {}, option=_DUMP_OPTIONS),
            ]
        except TypeError:  # something orjson refuses: the careful path
            parts = [
                dumps(msg["header"]),
                dumps(msg.get("parent_header") or {}),
                dumps(msg.get("metadata") or {}),
                dumps(msg.get("content") or {}),
            ]
        signature = self.signer.sign(parts)
        buffers = msg.get("buffers")
        if buffers:
            return [*identities, DELIMITER, signature, *parts, *buffers]
        return [*identities, DELIMITER, signature, *parts]

    def decode(self, frames: Sequence[bytes]) -> tuple[list[bytes], Message]:
        """Verify and decode wire frames into (identities, message).

        Raises :class:`InvalidSignature`, :class:`ReplayedMessage` or :class:`ProtocolError`;
        a message that fails any check is never returned.
        """
        try:
            index = frames.index(DELIMITER)
        except (ValueError, AttributeError):
            identities, parts = split_identities(frames)
        else:
            identities, parts = frames[:index], frames[index + 1 :]  # type: ignore[assignment]
        if len(parts) < 5:
            raise ProtocolError(
                f"truncated message: {len(parts)} frames after the delimiter, need 5"
            )
        signature, header_b, parent_b, metadata_b, content_b = parts[:5]
        signer = self.signer
        if signer._key:
            expected = signer.sign((header_b, parent_b, metadata_b, content_b))
            if not _compare_digest(bytes(signature), expected):
                raise InvalidSignature("message signature does not match its content")
            guard = self.replay_guard
            if guard is not None and not guard.check_and_record(expected):
                raise ReplayedMessage("message signature was seen before: replayed message refused")
        try:
            header = _loads(header_b)
            parent = _loads(parent_b)
            metadata = _loads(metadata_b)
            content = _loads(content_b)
        except orjson.JSONDecodeError:
            header, parent, metadata, content = (
                _json_frame(header_b, "header"),
                _json_frame(parent_b, "parent_header"),
                _json_frame(metadata_b, "metadata"),
                _json_frame(content_b, "content"),
            )
        return list(identities), checked_message(header, parent, metadata, content, parts[5:])

    def __repr__(self) -> str:
        return f"Session(id={self.session_id!r}, {self.signer!r})"
