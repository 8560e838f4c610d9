"""The Jupyter message model.

A :class:`Message` is a ``dict`` with the keys jupyter_client code expects
(``header``, ``msg_id``, ``msg_type``, ``parent_header``, ``metadata``, ``content``,
``buffers``), so ported code indexes it as before, plus typed read-only properties.
"""

from __future__ import annotations

import getpass
import itertools
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from ..errors import ProtocolError
from .jsonutil import parse_date, utcnow

PROTOCOL_VERSION = "5.5"
"""The messaging protocol version kernelwire speaks."""

Channel = Literal["shell", "iopub", "stdin", "control"]
CHANNELS: tuple[Channel, ...] = ("shell", "iopub", "stdin", "control")

Buffer = bytes | bytearray | memoryview

#: Requests that the spec puts on the control channel rather than shell.
CONTROL_REQUESTS = frozenset(
    {
        "debug_request",
        "interrupt_request",
        "create_subshell_request",
        "delete_subshell_request",
        "list_subshell_request",
        "usage_request",
    }
)


def _default_username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # getuser raises various errors when no user name can be found
        return "kernelwire"


USERNAME = _default_username()


class Message(dict[str, Any]):
    """One Jupyter message, as a dict with typed accessors.

    >>> header = {"msg_id": "1", "msg_type": "status"}
    >>> msg = Message.build(header, {}, {}, {"execution_state": "idle"})
    >>> msg.msg_type, msg["content"]["execution_state"]
    ('status', 'idle')
    """

    __slots__ = ()

    @classmethod
    def build(
        cls,
        header: dict[str, Any],
        parent_header: dict[str, Any],
        metadata: dict[str, Any],
        content: dict[str, Any],
        buffers: Sequence[Buffer] = (),
    ) -> Message:
        """Assemble a message from its parts (``msg_id`` and ``msg_type`` come from the header)."""
        return cls(
            header=header,
            msg_id=header.get("msg_id"),
            msg_type=header.get("msg_type"),
            parent_header=parent_header,
            metadata=metadata,
            content=content,
            buffers=list(buffers),
        )

    @property
    def header(self) -> dict[str, Any]:
        """The message's own header."""
        return self["header"]  # type: ignore[no-any-return]

    @property
    def msg_id(self) -> str:
        """The message id (``header['msg_id']``)."""
        return self["msg_id"]  # type: ignore[no-any-return]

    @property
    def msg_type(self) -> str:
        """The message type, e.g. ``'execute_reply'`` (``header['msg_type']``)."""
        return self["msg_type"]  # type: ignore[no-any-return]

    @property
    def parent_header(self) -> dict[str, Any]:
        """The header of the request this message answers (empty when none)."""
        return self["parent_header"]  # type: ignore[no-any-return]

    @property
    def parent_id(self) -> str | None:
        """The ``msg_id`` of the request this message answers, or ``None``."""
        parent = self.get("parent_header")
        return parent.get("msg_id") if parent else None

    @property
    def content(self) -> dict[str, Any]:
        """The message content."""
        return self["content"]  # type: ignore[no-any-return]

    @property
    def metadata(self) -> dict[str, Any]:
        """The message metadata."""
        return self["metadata"]  # type: ignore[no-any-return]

    @property
    def buffers(self) -> list[Buffer]:
        """Binary buffers sent after the JSON frames."""
        return self["buffers"]  # type: ignore[no-any-return]


class HeaderFactory:
    """Makes headers for one client session: unique ids, session, username, date.

    Message ids are ``<session>_<pid>_<n>``: unique without a uuid per message.
    """

    def __init__(self, session: str | None = None, username: str = USERNAME) -> None:
        self.session = session or uuid.uuid4().hex
        self.username = username
        self._counter = itertools.count()
        self._prefix = f"{self.session}_{os.getpid()}_"

    def new_id(self) -> str:
        """A message id unique within (and across) sessions."""
        return f"{self._prefix}{next(self._counter)}"

    def header(self, msg_type: str, subshell_id: str | None = None) -> dict[str, Any]:
        """A fresh header for a message of ``msg_type``."""
        header = {
            "msg_id": f"{self._prefix}{next(self._counter)}",
            "msg_type": msg_type,
            "username": self.username,
            "session": self.session,
            "date": utcnow(),
            "version": PROTOCOL_VERSION,
        }
        if subshell_id is not None:
            header["subshell_id"] = subshell_id
        return header

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
        """A new message of ``msg_type``; ``parent`` is the message (or header) it answers.

        ``content`` and ``metadata`` are used as given (not copied), as in jupyter_client.
        """
        parent_header: dict[str, Any] = {}
        if parent:
            parent_header = dict(parent.get("header", parent))
        header = self.header(msg_type, subshell_id)
        return Message(
            header=header,
            msg_id=header["msg_id"],
            msg_type=msg_type,
            parent_header=parent_header,
            metadata=metadata if isinstance(metadata, dict) else dict(metadata or {}),
            content=content if isinstance(content, dict) else dict(content or {}),
            buffers=list(buffers),
        )


def channel_for(msg_type: str) -> Channel:
    """The channel a request of ``msg_type`` is sent on by default."""
    if msg_type in CONTROL_REQUESTS:
        return "control"
    if msg_type == "input_reply":
        return "stdin"
    return "shell"


_fromisoformat = datetime.fromisoformat


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None and name != "header":
        return {}  # some kernels (xeus) send null for an empty parent header
    if type(value) is not dict:
        raise ProtocolError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def checked_message(
    header: Any, parent: Any, metadata: Any, content: Any, buffers: Sequence[Buffer] = ()
) -> Message:
    """The :class:`Message` made of four decoded JSON parts and its buffers, checked.

    The one validator of received messages, whatever their wire (the ZeroMQ codec, the
    WebSocket framings): every part a JSON object (a null one but the header counts as
    empty), a string ``msg_id`` and ``msg_type``, dates parsed. Raises
    :class:`~kernelwire.errors.ProtocolError` saying what is wrong.
    """
    if type(header) is not dict:
        header = _object(header, "header")
    if type(parent) is not dict:
        parent = _object(parent, "parent_header")
    if type(metadata) is not dict:
        metadata = _object(metadata, "metadata")
    if type(content) is not dict:
        content = _object(content, "content")
    msg_id = header.get("msg_id")
    msg_type = header.get("msg_type")
    if type(msg_id) is not str or type(msg_type) is not str:
        raise ProtocolError("header lacks a string msg_id or msg_type")
    parent_id = parent.get("msg_id")
    if parent_id is not None and type(parent_id) is not str:  # routing looks it up
        raise ProtocolError(
            f"parent_header msg_id must be a string, got {type(parent_id).__name__}"
        )
    date = header.get("date")
    if type(date) is str:
        try:  # a message's own date is new every time: no cache
            header["date"] = _fromisoformat(date)
        except ValueError:
            header["date"] = parse_date(date)
        else:
            if header["date"].tzinfo is None:
                header["date"] = parse_date(date)
    date = parent.get("date")
    if type(date) is str:
        parent["date"] = parse_date(date)
    return Message.build(header, parent, metadata, content, [memoryview(b) for b in buffers])
