"""Running code the way people want: what a notebook would show, as one result or a stream.

:class:`OutputCollector` turns IOPub messages into nbformat v4 outputs the way a
notebook keeps them (streams, displays and their updates, results, errors,
``clear_output``). :func:`run` / :func:`stream` (and their ``_async`` twins) run code on
a client and give an :class:`ExecutionResult` or the outputs as they arrive.

>>> result = run(client, "print('hi')\\n6 * 7")        # doctest: +SKIP
>>> result.stdout, result.text
('hi\\n', '42')
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .client._steps import Emit, Settle, Steps, time_left
from .client.async_client import AsyncKernelClient, AsyncPendingRequest, aiterate_steps
from .client.blocking import BlockingKernelClient, PendingRequest, iterate_steps
from .errors import ExecutionError, KernelTimeout, ProtocolError
from .outputs import NodeFrom, OutputNode, node_from
from .protocol import requests
from .protocol.message import Message

log = logging.getLogger("kernelwire.execution")

StdinHandler = Callable[[str, bool], str]
"""Answers an ``input()`` in the kernel: ``(prompt, password) -> value``."""

INTERRUPT_GRACE = 10.0
"""Seconds to wait for ``idle`` after interrupting a request that timed out."""

TRUNCATION_MARKER = "\n[kernelwire: output truncated, {dropped} more characters not kept]\n"

LOST_MARKER = (
    "\n[kernelwire: output lost: the kernel sent more than the client keeps "
    "(a message over max_message_bytes, or a dropped IOPub connection)]\n"
)

INVALID_MARKER = (
    "\n[kernelwire: the kernel sent an invalid {msg_type} message ({reason}); "
    "its content: {content}]\n"
)
"""Shown in place of a message a notebook could not keep (a mistyped field)."""

_BACKSPACE = re.compile(r"[^\n]\x08")
_JSON_MIME = re.compile(r"^application/(.*\+)?json$")


def process_control_characters(text: str) -> str:
    """Apply ``\\b`` (erase the previous character) and ``\\r`` (return to the start of
    the line and overwrite it) as a terminal or a Jupyter front end shows them.

    >>> process_control_characters("10%\\r50%\\r100%\\n")
    '100%\\n'
    >>> process_control_characters("abc\\rd")
    'dbc'
    """
    while "\x08" in text:
        reduced = _BACKSPACE.sub("", text, count=1)
        # A backspace at the start of a line erases nothing: drop it.
        text = text.replace("\x08", "", 1) if reduced == text else reduced
    if "\r" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        shown = ""
        for piece in line.split("\r"):
            shown = piece + shown[len(piece) :]
        lines.append(shown)
    return "\n".join(lines)


def as_execution_count(value: object) -> int | None:
    """``value`` if it is a valid execution count (an integer, at least 0), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _kind(value: object) -> str:
    """What a mistyped JSON value is, for an error message."""
    return "null" if value is None else type(value).__name__


def _text_kind(value: object) -> str:
    """What a value that should be text (or a list of strings) is, for an error message."""
    if isinstance(value, list):
        odd = next((item for item in value if not isinstance(item, str)), None)
        return f"a list holding {_kind(odd)}"
    return _kind(value)


def _multiline(value: object, what: str) -> str:
    """A notebook's multiline string (a string, or a list of strings, joined) from ``value``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "".join(value)
    raise ProtocolError(f"{what} is {_text_kind(value)}, not a string")


def _field(content: dict[str, Any], name: str, default: object = "") -> str:
    value = content.get(name, default)
    if not isinstance(value, str):
        raise ProtocolError(f"{name} is {_kind(value)}, not a string")
    return value


def _object(content: dict[str, Any], name: str) -> dict[str, Any]:
    value = content.get(name, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} is {_kind(value)}, not an object")
    return value


def _count(content: dict[str, Any]) -> int | None:
    value = content.get("execution_count")
    count = as_execution_count(value)
    if count is None and value is not None:
        raise ProtocolError(f"execution_count is {_kind(value)}, not a count")
    return count


def _mimebundle(content: dict[str, Any]) -> dict[str, Any]:
    """``data`` as a notebook keeps it: text for every type but JSON ones, which hold any value."""
    bundle = _object(content, "data")
    return {
        mime: value if _JSON_MIME.match(mime) else _multiline(value, f"data[{mime!r}]")
        for mime, value in bundle.items()
    }


def _stream_fields(content: dict[str, Any]) -> tuple[str, str]:
    """A ``stream`` message's name and text; :class:`ProtocolError` if either is mistyped.

    A text given as a list of strings (a notebook's multiline form) is joined.
    """
    return _field(content, "name", "stdout"), _multiline(content.get("text", ""), "text")


def output_from_msg(msg: Message, node_from: NodeFrom = node_from) -> OutputNode:
    """The nbformat v4 output for an IOPub ``display_data``, ``execute_result`` or ``error``.

    The same node nbformat's ``output_from_msg`` builds, without its per-output schema
    validation, which costs about a tenth of a trivial notebook's run; the notebook is
    still validated when it is written. Content a notebook cannot keep (a ``data`` that
    is not an object of strings, a ``traceback`` that is not a list of strings, ...)
    raises :class:`~kernelwire.ProtocolError` naming the field. ``node_from`` makes the
    nodes (nbformat's ``from_dict`` gives nbformat's own ``NotebookNode``).
    """
    msg_type = msg["msg_type"]
    content = msg["content"]
    output: OutputNode = node_from({"output_type": msg_type})
    if msg_type == "error":
        output.ename = _field(content, "ename")
        output.evalue = _field(content, "evalue")
        traceback = content.get("traceback", [])
        if not isinstance(traceback, list) or not all(isinstance(t, str) for t in traceback):
            raise ProtocolError(f"traceback is {_text_kind(traceback)}, not a list of strings")
        output.traceback = list(traceback)
        return output
    output.metadata = node_from(_object(content, "metadata"))
    output.data = node_from(_mimebundle(content))
    if msg_type == "execute_result":
        output.execution_count = _count(content)
    return output


class OutputCollector:
    """Keeps the outputs of one execution as a notebook would.

    ``front_end`` merges consecutive stream outputs of the same name and applies
    ``\\r`` / ``\\b`` (what JupyterLab shows and saves); without it, every stream message
    stays its own output, as nbclient keeps them by default. ``displays`` shares display
    ids between collectors (the cells of one notebook). ``max_output_chars`` caps
    the text kept; past it, a visible marker says how much was dropped. A rich result
    too big for the room left keeps the representations that fit, its ``text/plain``
    first, and names the others in ``metadata.kernelwire.dropped``. The outputs are
    :class:`~kernelwire.OutputNode` s, or what ``node_from`` makes of a dict.
    """

    def __init__(
        self,
        *,
        front_end: bool = True,
        max_output_chars: int | None = None,
        displays: dict[str, list[OutputNode]] | None = None,
        node_from: NodeFrom = node_from,
    ) -> None:
        self.front_end = front_end
        self._node_from = node_from
        self.max_output_chars = max_output_chars
        self.outputs: list[OutputNode] = []
        self.execution_count: int | None = None
        self.dropped_chars = 0
        self.invalid = 0
        """Messages a notebook could not keep (mistyped content): each shown as a marker."""
        self._kept_chars = 0
        self._clear_pending = False
        # display_id -> outputs showing it; shared by a notebook's cells, since an update
        # from one cell changes the display wherever it is.
        self._displays: dict[str, list[OutputNode]] = {} if displays is None else displays
        self.result: ExecutionResult | None = None
        """The finished execution's result, once :func:`stream` has run to the end."""

    def _node(self, **fields: Any) -> OutputNode:
        node: OutputNode = self._node_from(fields)
        return node

    def feed(self, msg: Message) -> OutputNode | None:
        """Take one IOPub message; return the output it added or changed, if any.

        A message whose content a notebook cannot keep (a mistyped field) adds a
        marker output instead, showing what the kernel sent, and is counted in
        ``invalid``.
        """
        try:
            return self._feed(msg)
        except ProtocolError as exc:
            return self._invalid(msg, exc)

    def _feed(self, msg: Message) -> OutputNode | None:
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type in ("execute_input", "execute_result") and "execution_count" in content:
            self.execution_count = _count(content)
        transient = content.get("transient") or {}
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        if display_id is not None and not isinstance(display_id, str):
            raise ProtocolError(f"transient.display_id is {_kind(display_id)}, not a string")
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return None
        if display_id and msg_type in ("display_data", "execute_result", "update_display_data"):
            self._update_display(display_id, msg)
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return None  # status, execute_input, update_display_data, comms
        if msg_type == "stream":
            name, text = _stream_fields(content)
            if self._clear_pending:
                self._clear()
            return self._stream(name, text)
        output = output_from_msg(msg, self._node_from)
        if self._clear_pending:
            self._clear()
        return self._add(output, display_id)

    def _add(self, output: OutputNode, display_id: str | None = None) -> OutputNode | None:
        if "data" in output and self.max_output_chars is not None and not self.dropped_chars:
            output = self._shrink(output)
        if not self._admit(_text_size(output)):
            return None
        self.outputs.append(output)
        if display_id:
            self._displays.setdefault(display_id, []).append(output)
        return output

    def _shrink(self, output: OutputNode) -> OutputNode:
        """A rich result too big for the room left, cut down to the representations that
        fit (its ``text/plain`` first): a table whose HTML is too long still shows as
        its plain text. The representations left out are named in the output's
        ``metadata.kernelwire.dropped`` (mime type -> characters)."""
        assert self.max_output_chars is not None
        room = self.max_output_chars - self._kept_chars
        sizes = {
            mime: len(value) for mime, value in output["data"].items() if isinstance(value, str)
        }
        if sum(sizes.values()) <= room:
            return output
        order = sorted(sizes, key=lambda mime: (mime != "text/plain", sizes[mime]))
        kept: dict[str, Any] = {m: v for m, v in output["data"].items() if m not in sizes}
        dropped: dict[str, int] = {}
        for mime in order:
            if sizes[mime] <= room:
                kept[mime] = output["data"][mime]
                room -= sizes[mime]
            else:
                dropped[mime] = sizes[mime]
        if len(dropped) == len(sizes):
            return output  # nothing small to keep: it goes as a whole, behind the marker
        metadata = {**output.get("metadata", {}), "kernelwire": {"dropped": dropped}}
        return self._node(**{**output, "data": kept, "metadata": metadata})

    def _invalid(self, msg: Message, error: ProtocolError) -> OutputNode | None:
        self.invalid += 1
        if self.invalid == 1 or self.invalid % 1000 == 0:
            log.warning(
                "the kernel sent an invalid %s message (%s); kept as a marker output (%d so far)",
                msg["msg_type"],
                error,
                self.invalid,
            )
        content = repr(msg["content"])
        if len(content) > 500:
            content = content[:500] + "..."
        text = INVALID_MARKER.format(msg_type=msg["msg_type"], reason=error, content=content)
        return self._add(self._node(output_type="stream", name="stderr", text=text))

    def _clear(self) -> None:
        for shown in self._displays.values():
            shown[:] = [o for o in shown if not any(o is mine for mine in self.outputs)]
        self.outputs.clear()
        self._clear_pending = False

    def _update_display(self, display_id: str, msg: Message) -> None:
        data = _mimebundle(msg["content"])
        metadata = _object(msg["content"], "metadata")
        for output in self._displays.get(display_id, []):
            output["data"] = self._node_from(data)
            output["metadata"] = self._node_from(metadata)

    def _admit(self, size: int) -> bool:
        """Count ``size`` characters against the cap; False (and a marker) once it is full."""
        if self.max_output_chars is None:
            self._kept_chars += size
            return True
        if self.dropped_chars:
            self.dropped_chars += size
            self._update_marker()
            return False
        if self._kept_chars + size <= self.max_output_chars:
            self._kept_chars += size
            return True
        self.dropped_chars = size
        self.outputs.append(self._node(output_type="stream", name="stderr", text=""))
        self._update_marker()
        return False

    def mark_lost(self) -> None:
        """Say, once, in a stderr output, that output of the run may have been lost."""
        if not any(o.get("text") == LOST_MARKER for o in self.outputs):
            self.outputs.append(self._node(output_type="stream", name="stderr", text=LOST_MARKER))

    def _update_marker(self) -> None:
        marker = self.outputs[-1]
        marker["text"] = TRUNCATION_MARKER.format(dropped=self.dropped_chars)

    def _stream(self, name: str, text: str) -> OutputNode | None:
        if self.max_output_chars is not None and not self.dropped_chars:
            room = self.max_output_chars - self._kept_chars
            if len(text) > room:  # keep what fits, then the marker
                kept, text = text[: max(room, 0)], text[max(room, 0) :]
                if kept:
                    self._stream(name, kept)
        if not self._admit(len(text)):
            return None
        last = self.outputs[-1] if self.outputs else None
        if (
            self.front_end
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == name
        ):
            last["text"] = process_control_characters(last["text"] + text)
            return last
        output = self._node(
            output_type="stream",
            name=name,
            text=process_control_characters(text) if self.front_end else text,
        )
        self.outputs.append(output)
        return output


def _text_size(output: OutputNode) -> int:
    if "text" in output:
        return len(output["text"])
    if output.get("output_type") == "error":
        return sum(len(line) for line in output.get("traceback", []))
    return sum(
        len(value) if isinstance(value, str) else 0 for value in output.get("data", {}).values()
    )


@dataclass
class ExecutionResult:
    """What running some code showed: status, count, nbformat outputs, and the reply."""

    status: str
    execution_count: int | None
    outputs: list[OutputNode] = field(default_factory=list)
    reply: Message | None = None
    incomplete: bool = False

    @property
    def stdout(self) -> str:
        """Everything written to standard output."""
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        """Everything written to standard error."""
        return self._stream("stderr")

    def _stream(self, name: str) -> str:
        return "".join(
            o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == name
        )

    @property
    def data(self) -> dict[str, Any]:
        """The ``execute_result`` mime bundle (empty when the code had no result)."""
        for output in self.outputs:
            if output["output_type"] == "execute_result":
                return dict(output["data"])
        return {}

    @property
    def text(self) -> str | None:
        """The result's ``text/plain``, e.g. ``'42'`` for ``6 * 7``; ``None`` without a result."""
        value = self.data.get("text/plain")
        return value if isinstance(value, str) else None

    @property
    def error(self) -> ExecutionError | None:
        """The error the code raised, if any."""
        if self.status == "ok":
            return None
        for output in self.outputs:
            if output["output_type"] == "error":
                return ExecutionError(output["ename"], output["evalue"], output["traceback"])
        content = self.reply["content"] if self.reply else {}
        ename, evalue, traceback = (content.get(k) for k in ("ename", "evalue", "traceback"))
        if not isinstance(traceback, list):
            traceback = []
        return ExecutionError(
            ename if isinstance(ename, str) else self.status,
            evalue if isinstance(evalue, str) else "",
            [line for line in traceback if isinstance(line, str)],
        )

    def raise_for_error(self) -> ExecutionResult:
        """Raise :class:`ExecutionError` if the code raised; return ``self`` otherwise."""
        error = self.error
        if error is not None:
            raise error
        return self


def _request(code: str, stdin: StdinHandler | None) -> requests.Request:
    return requests.execute(code, allow_stdin=stdin is not None)


def _answer(
    client: BlockingKernelClient | AsyncKernelClient, msg: Message, stdin: StdinHandler | None
) -> None:
    if msg["msg_type"] == "input_request" and stdin is not None:
        content = msg["content"]
        prompt = content.get("prompt", "")
        prompt = prompt if isinstance(prompt, str) else str(prompt)
        client.input(stdin(prompt, bool(content.get("password", False))))


def _result(
    collector: OutputCollector, pending: PendingRequest | AsyncPendingRequest
) -> ExecutionResult:
    if pending.incomplete:
        collector.mark_lost()
    reply = pending._state.reply
    content = reply["content"] if reply else {}
    count = as_execution_count(content.get("execution_count"))
    status = content.get("status")
    return ExecutionResult(
        status=status if isinstance(status, str) else "unknown",
        execution_count=collector.execution_count if count is None else count,
        outputs=collector.outputs,
        reply=reply,
        incomplete=pending.incomplete,
    )


def _timed_out(timeout: float | None, result: ExecutionResult) -> KernelTimeout:
    error = KernelTimeout(
        f"execution did not finish within {timeout:g} s: the kernel was interrupted"
    )
    error.result = result  # type: ignore[attr-defined]
    return error


def _stream_steps(
    client: BlockingKernelClient | AsyncKernelClient,
    code: str,
    timeout: float | None,
    stdin: StdinHandler | None,
    interrupt: Callable[[], Any] | None,
    collector: OutputCollector,
    *,
    on_arrival: bool = False,
) -> Steps[None]:
    """Run ``code``, emitting each output as it is added or changed (see :func:`stream`).

    With ``on_arrival``, each IOPub message goes to ``collector`` as it is read (under
    the routing lock), not through the request's events: output past the collector's
    cap is dropped on arrival, never held (``run``); nothing is emitted then.
    """
    feed = collector.feed if on_arrival else None
    pending = client.submit(_request(code, stdin), on_iopub=feed)
    left = time_left(timeout)
    try:
        while True:
            try:
                event = yield from pending._next(left)
            except KernelTimeout:
                yield Settle(
                    (interrupt or (lambda: client.interrupt(reply=True, timeout=INTERRUPT_GRACE)))()
                )
                grace = time_left(INTERRUPT_GRACE)
                while (late := (yield from pending._next(grace))) is not None:
                    if late[0] == "iopub":
                        collector.feed(late[1])
                raise _timed_out(timeout, _result(collector, pending)) from None
            if event is None:
                break
            channel, msg = event
            if channel == "iopub":
                output = collector.feed(msg)
                if output is not None:
                    yield Emit(output)
            elif channel == "stdin":
                _answer(client, msg, stdin)
    finally:
        pending.close()
    collector.result = _result(collector, pending)


def stream(
    client: BlockingKernelClient,
    code: str,
    *,
    timeout: float | None = None,
    stdin: StdinHandler | None = None,
    interrupt: Callable[[], Any] | None = None,
    collector: OutputCollector | None = None,
) -> Iterator[OutputNode]:
    """Run ``code`` and yield each output as it is added or changed.

    On ``timeout`` the kernel is interrupted (``interrupt``, default: an
    ``interrupt_request``), its ``idle`` awaited, and :class:`KernelTimeout` raised; the
    outputs so far are on the exception's ``result``.
    """
    steps = _stream_steps(client, code, timeout, stdin, interrupt, collector or OutputCollector())
    return iterate_steps(client.engine, steps)


def run(
    client: BlockingKernelClient,
    code: str,
    *,
    timeout: float | None = None,
    stdin: StdinHandler | None = None,
    interrupt: Callable[[], Any] | None = None,
    front_end: bool = True,
    max_output_chars: int | None = None,
) -> ExecutionResult:
    """Run ``code`` and return what a notebook would show (see :func:`stream`).

    Each IOPub message goes to the collector as it is read, so output past
    ``max_output_chars`` is dropped on arrival: a run holds about the cap, however
    much the code prints.
    """
    collector = OutputCollector(front_end=front_end, max_output_chars=max_output_chars)
    steps = _stream_steps(client, code, timeout, stdin, interrupt, collector, on_arrival=True)
    for _ in iterate_steps(client.engine, steps):
        pass
    assert collector.result is not None
    return collector.result


def stream_async(
    client: AsyncKernelClient,
    code: str,
    *,
    timeout: float | None = None,
    stdin: StdinHandler | None = None,
    interrupt: Callable[[], Any] | None = None,
    collector: OutputCollector | None = None,
) -> AsyncIterator[OutputNode]:
    """:func:`stream` for asyncio clients (``interrupt`` may be a coroutine function)."""
    steps = _stream_steps(client, code, timeout, stdin, interrupt, collector or OutputCollector())
    return aiterate_steps(client.engine, steps)


async def run_async(
    client: AsyncKernelClient,
    code: str,
    *,
    timeout: float | None = None,
    stdin: StdinHandler | None = None,
    interrupt: Callable[[], Any] | None = None,
    front_end: bool = True,
    max_output_chars: int | None = None,
) -> ExecutionResult:
    """:func:`run` for asyncio clients."""
    collector = OutputCollector(front_end=front_end, max_output_chars=max_output_chars)
    steps = _stream_steps(client, code, timeout, stdin, interrupt, collector, on_arrival=True)
    async for _ in aiterate_steps(client.engine, steps):
        pass
    assert collector.result is not None
    return collector.result


class RunsCode:
    """``run`` and ``stream`` for a kernel handle that can give a client and interrupt.

    Mixed into :class:`~kernelwire.Kernel` and :class:`~kernelwire.RemoteKernel`.
    """

    def _runner(self) -> BlockingKernelClient:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Interrupt the running code."""
        raise NotImplementedError

    def run(
        self,
        code: str,
        *,
        timeout: float | None = None,
        stdin: StdinHandler | None = None,
        front_end: bool = True,
        max_output_chars: int | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return what a notebook would show (:class:`ExecutionResult`).

        ``stdin(prompt, password)`` answers ``input()``; without it ``input()`` raises in
        the kernel. On ``timeout`` the kernel is interrupted, its idle awaited, and
        :class:`KernelTimeout` raised (the partial result on its ``result``).
        """
        return run(
            self._runner(),
            code,
            timeout=timeout,
            stdin=stdin,
            interrupt=self.interrupt,
            front_end=front_end,
            max_output_chars=max_output_chars,
        )

    def stream(
        self, code: str, *, timeout: float | None = None, stdin: StdinHandler | None = None
    ) -> Iterator[OutputNode]:
        """Run ``code`` and yield its outputs (nbformat dicts) as they are added or change."""
        return stream(self._runner(), code, timeout=timeout, stdin=stdin, interrupt=self.interrupt)
