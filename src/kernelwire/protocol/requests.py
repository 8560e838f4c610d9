"""Constructors for every request of the Jupyter messaging protocol 5.x.

Each returns a :class:`Request`: the message type, its content and the channel it
goes on. Nothing here touches a socket; a client turns a ``Request`` into a signed
message with its own session.

>>> req = execute("1 + 1", silent=True)
>>> req.msg_type, req.channel, req.content["silent"]
('execute_request', 'shell', True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .message import Buffer, Channel, channel_for

HistAccessType = Literal["range", "tail", "search"]
"""How ``history_request`` selects: a range of a session, the last ``n``, a search."""


@dataclass(frozen=True)
class Request:
    """A request to send: type, content, channel, and optional metadata, buffers, subshell."""

    msg_type: str
    content: dict[str, Any]
    channel: Channel = "shell"
    metadata: dict[str, Any] = field(default_factory=dict)
    buffers: tuple[Buffer, ...] = ()
    subshell_id: str | None = None

    @classmethod
    def of(cls, msg_type: str, content: Mapping[str, Any] | None = None, **extra: Any) -> Request:
        """A request of any type, on the channel the spec assigns it."""
        return cls(
            msg_type, dict(content or {}), extra.pop("channel", channel_for(msg_type)), **extra
        )


def _check_code(code: object, what: str = "code") -> str:
    if not isinstance(code, str):
        raise TypeError(f"{what} must be a str, not {type(code).__name__}")
    return code


def execute(
    code: str,
    silent: bool = False,
    store_history: bool = True,
    user_expressions: Mapping[str, str] | None = None,
    allow_stdin: bool = True,
    stop_on_error: bool = True,
    *,
    subshell_id: str | None = None,
) -> Request:
    """``execute_request``: run ``code``."""
    content = {
        "code": _check_code(code),
        "silent": silent,
        "store_history": store_history,
        "user_expressions": dict(user_expressions or {}),
        "allow_stdin": allow_stdin,
        "stop_on_error": stop_on_error,
    }
    return Request("execute_request", content, "shell", subshell_id=subshell_id)


def _cursor(code: str, cursor_pos: int | None) -> int:
    return len(code) if cursor_pos is None else cursor_pos


def complete(code: str, cursor_pos: int | None = None) -> Request:
    """``complete_request``: completions at ``cursor_pos`` (default: the end of ``code``)."""
    _check_code(code)
    return Request("complete_request", {"code": code, "cursor_pos": _cursor(code, cursor_pos)})


def inspect(code: str, cursor_pos: int | None = None, detail_level: Literal[0, 1] = 0) -> Request:
    """``inspect_request``: documentation for the name at ``cursor_pos``."""
    _check_code(code)
    return Request(
        "inspect_request",
        {"code": code, "cursor_pos": _cursor(code, cursor_pos), "detail_level": detail_level},
    )


def history(
    raw: bool = True,
    output: bool = False,
    hist_access_type: HistAccessType = "range",
    **kwargs: Any,
) -> Request:
    """``history_request``.

    ``kwargs`` are ``session``, ``start``, ``stop``, ``n``, ``pattern``, ``unique``.
    """
    if hist_access_type == "range":
        kwargs.setdefault("session", 0)
        kwargs.setdefault("start", 0)
    content = {"raw": raw, "output": output, "hist_access_type": hist_access_type, **kwargs}
    return Request("history_request", content)


def kernel_info() -> Request:
    """``kernel_info_request``."""
    return Request("kernel_info_request", {})


def comm_info(target_name: str | None = None) -> Request:
    """``comm_info_request``: open comms, optionally only those of ``target_name``."""
    content = {} if target_name is None else {"target_name": target_name}
    return Request("comm_info_request", content)


def is_complete(code: str) -> Request:
    """``is_complete_request``: whether ``code`` is ready to run."""
    return Request("is_complete_request", {"code": _check_code(code)})


def shutdown(restart: bool = False, *, channel: Channel = "control") -> Request:
    """``shutdown_request`` (on control, as protocol 5.4 recommends)."""
    return Request("shutdown_request", {"restart": restart}, channel)


def interrupt() -> Request:
    """``interrupt_request`` for kernels whose ``interrupt_mode`` is ``message``."""
    return Request("interrupt_request", {}, "control")


def input_reply(value: str) -> Request:
    """``input_reply``: the answer to an ``input_request``."""
    return Request("input_reply", {"value": _check_code(value, "value")}, "stdin")


def comm_open(
    comm_id: str,
    target_name: str,
    data: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    buffers: Sequence[Buffer] = (),
    target_module: str | None = None,
) -> Request:
    """``comm_open``: open a comm to ``target_name`` in the kernel."""
    content: dict[str, Any] = {
        "comm_id": comm_id,
        "target_name": target_name,
        "data": dict(data or {}),
    }
    if target_module is not None:
        content["target_module"] = target_module
    return Request("comm_open", content, "shell", dict(metadata or {}), tuple(buffers))


def comm_msg(
    comm_id: str,
    data: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    buffers: Sequence[Buffer] = (),
) -> Request:
    """``comm_msg``: a message on an open comm."""
    content = {"comm_id": comm_id, "data": dict(data or {})}
    return Request("comm_msg", content, "shell", dict(metadata or {}), tuple(buffers))


def comm_close(
    comm_id: str,
    data: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    buffers: Sequence[Buffer] = (),
) -> Request:
    """``comm_close``: close a comm."""
    content = {"comm_id": comm_id, "data": dict(data or {})}
    return Request("comm_close", content, "shell", dict(metadata or {}), tuple(buffers))


def debug(content: Mapping[str, Any]) -> Request:
    """``debug_request``: a Debug Adapter Protocol request, on control."""
    return Request("debug_request", dict(content), "control")


def create_subshell() -> Request:
    """``create_subshell_request`` (protocol 5.5, on control)."""
    return Request("create_subshell_request", {}, "control")


def list_subshell() -> Request:
    """``list_subshell_request`` (protocol 5.5, on control)."""
    return Request("list_subshell_request", {}, "control")


def delete_subshell(subshell_id: str) -> Request:
    """``delete_subshell_request`` (protocol 5.5, on control)."""
    return Request("delete_subshell_request", {"subshell_id": subshell_id}, "control")


def usage() -> Request:
    """``usage_request``: the kernel's resource usage (ipykernel extension, on control)."""
    return Request("usage_request", {}, "control")
