"""``kernelwire.session``: a :class:`Session` with jupyter_client's method names.

Code written for ``jupyter_client.session.Session`` (``msg``, ``send``, ``recv``,
``serialize``, ``deserialize``, ``feed_identities``, ``sign``) runs on this class; the
framing, signing and replay guard are kernelwire's own codec
(:class:`kernelwire.protocol.codec.Session`), so a message made here is accepted
anywhere kernelwire's sessions are, and the other way round.

>>> session = Session(key=b"secret")
>>> frames = session.serialize(session.msg("kernel_info_request"))
>>> idents, rest = session.feed_identities(frames)
>>> Session(key=b"secret").deserialize(rest)["msg_type"]
'kernel_info_request'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import zmq

from .protocol import codec
from .protocol.codec import DEFAULT_SCHEME, DELIMITER, Signer, split_identities
from .protocol.jsonutil import dumps, loads
from .protocol.message import USERNAME, Buffer, HeaderFactory, Message

# Traits of jupyter_client's Session that change nothing here: accepted so that code
# constructing a Session with them keeps working.
_IGNORED_OPTIONS = frozenset(
    {
        "config",
        "parent",
        "log",
        "debug",
        "check_pid",
        "buffer_threshold",
        "item_threshold",
        "copy_threshold",
        "digest_history_size",
        "adapt_version",
        "keyfile",
        "metadata",
    }
)


class Session(codec.Session):
    """A signed session with jupyter_client's ``Session`` constructor and methods.

    ``key``, ``signature_scheme``, ``session`` (the id) and ``username`` are taken as
    keywords as jupyter_client takes them; ``packer``/``unpacker`` may only be
    ``"json"`` (kernelwire's wire format). Other jupyter_client traits (``config``,
    ``parent``, ``log``, ...) are accepted and have no effect.
    """

    def __init__(
        self,
        key: bytes | str = b"",
        signature_scheme: str = DEFAULT_SCHEME,
        *,
        session: str | None = None,
        session_id: str | None = None,
        username: str = USERNAME,
        check_replay: bool = True,
        packer: str = "json",
        unpacker: str = "json",
        **options: Any,
    ) -> None:
        unknown = set(options) - _IGNORED_OPTIONS
        if unknown:
            raise TypeError(f"Session() got unexpected keyword arguments: {sorted(unknown)}")
        for name, value in (("packer", packer), ("unpacker", unpacker)):
            if value != "json":
                raise ValueError(f"Session {name} must be 'json' with kernelwire, got {value!r}")
        super().__init__(
            key,
            signature_scheme,
            session_id=session_id or session,
            username=username,
            check_replay=check_replay,
        )
        self.pid = os.getpid()

    # -- jupyter_client's attributes ---------------------------------------------
    @property
    def session(self) -> str:
        """The session id (jupyter_client's name for :attr:`session_id`)."""
        return self.session_id

    @property
    def username(self) -> str:
        """The user name sent in every header."""
        return self.headers.username

    @property
    def key(self) -> bytes:
        """The HMAC key; setting it re-keys the session."""
        return self.signer._key

    @key.setter
    def key(self, value: bytes | str) -> None:
        self.signer = Signer(value.encode() if isinstance(value, str) else value, self.scheme)

    @property
    def scheme(self) -> str:
        """The signature scheme (``hmac-sha256``)."""
        return self.signature_scheme

    @property
    def auth(self) -> Signer | None:
        """The signer, or ``None`` when messages are unsigned (an empty key)."""
        return self.signer if self.signer.enabled else None

    @property
    def digest_history(self) -> set[bytes]:
        """Signatures seen recently (the replay guard's memory)."""
        return self.replay_guard._seen if self.replay_guard is not None else set()

    def clone(self) -> Session:
        """A session with the same id, key and scheme but its own replay memory."""
        return Session(
            self.key,
            self.signature_scheme,
            session=self.session_id,
            username=self.username,
            check_replay=self.replay_guard is not None,
        )

    def pack(self, obj: Any) -> bytes:
        """Serialize ``obj`` to JSON bytes as messages are."""
        return dumps(obj)

    def unpack(self, data: bytes | memoryview) -> Any:
        """Parse JSON bytes."""
        return loads(bytes(data))

    # -- building ----------------------------------------------------------------
    def msg_header(self, msg_type: str) -> dict[str, Any]:
        """A new header for ``msg_type``."""
        return self.headers.header(msg_type)

    def msg(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """A new message dict (``header``, ``msg_id``, ``msg_type``, ``parent_header``,
        ``content``, ``metadata``); ``header`` replaces the generated one."""
        msg = self.message(msg_type, content, parent=parent, metadata=metadata)
        if header is not None:
            msg["header"] = dict(header)
            msg["msg_id"] = header["msg_id"]
            msg["msg_type"] = header["msg_type"]
        return msg

    def sign(self, msg_list: Sequence[bytes]) -> bytes:
        """The hex HMAC of the four JSON frames (``b""`` when the key is empty)."""
        return self.signer.sign(msg_list[:4])

    def serialize(
        self, msg: Mapping[str, Any], ident: bytes | Sequence[bytes] | None = None
    ) -> list[bytes]:
        """Wire frames for ``msg``: identities, delimiter, signature and the four JSON
        frames. Buffers are not included (``send`` appends them), as in jupyter_client."""
        frames = self.encode({**msg, "buffers": []}, _identities(ident))
        return [bytes(frame) for frame in frames]

    def feed_identities(
        self, msg_list: Sequence[Any], copy: bool = True
    ) -> tuple[list[bytes], list[Any]]:
        """Split frames at the delimiter: (identities, the frames after it)."""
        frames = [_frame_bytes(f) for f in msg_list] if not copy else list(msg_list)
        return split_identities(frames)

    def deserialize(
        self, msg_list: Sequence[Any], content: bool = True, copy: bool = True
    ) -> Message:
        """Verify and decode the frames after the delimiter (see :meth:`feed_identities`).

        Raises :class:`~kernelwire.InvalidSignature` or :class:`~kernelwire.ReplayedMessage`
        (both ``ValueError``, as jupyter_client raises). With ``content=False`` the content
        stays as its JSON bytes.
        """
        frames = [_frame_bytes(f) for f in msg_list]
        _, msg = self.decode([DELIMITER, *frames])
        if not content:
            msg["content"] = frames[4]
        return msg

    # -- sockets -----------------------------------------------------------------
    def send(
        self,
        stream: Any,
        msg_or_type: Mapping[str, Any] | str,
        content: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
        ident: bytes | Sequence[bytes] | None = None,
        buffers: Sequence[Buffer] | None = None,
        track: bool = False,
        header: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message | None:
        """Build (from a type) or take a message, sign it and send it on ``stream`` (a
        zmq socket, or anything with ``send_multipart``); returns the message sent."""
        if isinstance(msg_or_type, str):
            msg = self.msg(msg_or_type, content, parent, header, metadata)
        else:
            msg = Message(msg_or_type)
        if buffers is not None:
            msg["buffers"] = list(buffers)
        frames = self.encode(msg, _identities(ident))
        if stream is None:
            return None
        if track and isinstance(stream, zmq.Socket):
            msg["tracker"] = stream.send_multipart(frames, copy=False, track=True)
        else:
            stream.send_multipart(frames)
        return msg

    def send_raw(
        self,
        stream: Any,
        msg_list: Sequence[bytes],
        flags: int = 0,
        copy: bool = True,
        ident: bytes | Sequence[bytes] | None = None,
    ) -> None:
        """Sign and send already-serialized JSON frames (header, parent, metadata, content)."""
        frames = [*_identities(ident), DELIMITER, self.sign(msg_list), *msg_list]
        stream.send_multipart(frames, flags, copy=copy)

    def recv(
        self, socket: Any, mode: int = zmq.NOBLOCK, content: bool = True, copy: bool = True
    ) -> tuple[list[bytes] | None, Message | None]:
        """Receive and decode one message: ``(identities, msg)``, or ``(None, None)``
        when ``mode`` is ``zmq.NOBLOCK`` and nothing is waiting."""
        try:
            frames = socket.recv_multipart(mode, copy=copy)
        except zmq.Again:
            return None, None
        idents, rest = self.feed_identities(frames, copy)
        return idents, self.deserialize(rest, content=content, copy=copy)


def _identities(ident: bytes | Sequence[bytes] | None) -> list[bytes]:
    if ident is None:
        return []
    if isinstance(ident, (bytes, bytearray)):
        return [bytes(ident)]
    return [bytes(i) if not isinstance(i, str) else i.encode() for i in ident]


def _frame_bytes(frame: Any) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


__all__ = ["HeaderFactory", "Session"]
