"""``kernelwire mcp``: a Model Context Protocol server that gives AI agents Jupyter kernels.

Built on the official MCP Python SDK (``pip install kernelwire[mcp]``); imported only by
that command, so ``import kernelwire`` never loads ``mcp``. Each MCP session has its own
kernels; every kernel is shut down when the server stops (its stdin closed, SIGTERM,
Ctrl-C). A run past its timeout is interrupted and waited to idle before the call
returns, so no run keeps executing behind a returned call; ``input()`` is asked of the
client through MCP elicitation where the client supports it, and fails at once otherwise
(the kernel is told there is no stdin); a kernel that died is a tool error.

The kernelwire API is blocking: each tool call runs it on a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
import orjson
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, Field

from .client._hooks import strip_ansi
from .errors import (
    KernelDied,
    KernelRestarted,
    KernelTimeout,
    KernelwireError,
    NotebookEditError,
)
from .execution import ExecutionResult
from .existing import ExistingKernel
from .lifecycle.kernel import Kernel, start_kernel
from .lifecycle.specs import list_kernel_specs
from .mcp_notebooks import NotebookFiles
from .outputs import OutputNode
from .remote import JupyterServer, RemoteKernel

log = logging.getLogger("kernelwire.mcp")

MAX_OUTPUT_CHARS = 1_000_000
"""Output a run keeps (text and images' base64); past it, kernelwire's truncation marker."""

IMAGE_TYPES = ("image/png", "image/jpeg")
"""Outputs sent as MCP image content, for a multimodal model to see."""

PROGRESS_INTERVAL = 2.0
"""Seconds between progress notifications of a long run (for a client that asks)."""

STOP_WAIT = 60.0
"""Seconds the server, stopping, waits for kernel starts and shutdowns under way."""

MAX_TEXT_CHARS = 20_000
"""Text a tool call returns at most; the whole text goes to a file named in the reply."""

STDIN_HINT = "[kernelwire mcp: input() is not available here: put the values in the code instead]"


class InputAnswer(BaseModel):
    """The form an ``input()`` of the kernel is asked with (MCP elicitation)."""

    value: str = Field(description="The line of text to give the program's input().")


@dataclass
class InputAsker:
    """Answers a run's ``input()`` by asking the MCP client (elicitation), from the tool's
    worker thread; what became of each question is kept for the reply.

    A password prompt (``getpass``) is not asked: the MCP specification forbids asking
    for secrets this way, so it gets an empty answer. So does a question the client
    declines or cancels, or leaves unanswered for ``timeout`` seconds.
    """

    ctx: Context[Any, Any]
    timeout: float
    notes: list[str] = field(default_factory=list)

    def __call__(self, prompt: str, password: bool) -> str:
        if password:
            self.notes.append(
                f"[kernelwire mcp: the password prompt {prompt!r} was given an empty answer: "
                "secrets are not asked for through MCP]"
            )
            return ""
        answer = anyio.from_thread.run(self._ask, prompt)
        if answer is None:
            self.notes.append(
                f"[kernelwire mcp: input({prompt!r}) was not answered by the client; "
                "it was given an empty line]"
            )
            return ""
        return answer

    async def _ask(self, prompt: str) -> str | None:
        message = (
            f"The code being run asks for input: {prompt}"
            if prompt
            else ("The code being run asks for a line of input.")
        )
        with anyio.move_on_after(self.timeout):
            result = await self.ctx.elicit(message=message, schema=InputAnswer)
            if result.action == "accept" and result.data is not None:
                return result.data.value
        return None


def input_asker(ctx: Context[Any, Any], timeout: float) -> InputAsker | None:
    """An :class:`InputAsker` if the client can answer elicitation requests, else ``None``
    (then ``input()`` fails in the kernel at once)."""
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return None
    return InputAsker(ctx, timeout)


_T = TypeVar("_T")

Session = object
"""The key of a session's kernels: the SDK's ``Connection`` (one per stdio process, one
per HTTP session)."""


Handle = Kernel | RemoteKernel | ExistingKernel
"""A kernel the tools use: started here (locally or on a server), or attached to."""


@dataclass
class _Entry:
    """One kernel of a session; ``busy`` lets one run at a time use it."""

    kernel: Handle
    name: str
    """Its kernel spec's name."""
    language: str = ""
    busy: threading.Lock = field(default_factory=threading.Lock)
    dead: str | None = None
    """Why the kernel is gone (set once it died): every later call says so."""

    @property
    def attached(self) -> bool:
        """A kernel someone else started (``--existing``): never stopped or restarted here."""
        return isinstance(self.kernel, ExistingKernel)

    def stop(self, now: bool = False) -> None:
        """Shut it down (an attached kernel: disconnect only)."""
        kernel = self.kernel
        if isinstance(kernel, Kernel):
            kernel.shutdown(now=now)
        elif isinstance(kernel, RemoteKernel):
            kernel.shutdown()
        else:
            kernel.close()

    def restart(self, now: bool = False) -> None:
        """Restart it; a :class:`ToolError` for an attached kernel."""
        kernel = self.kernel
        if isinstance(kernel, Kernel):
            kernel.restart(now=now)
        elif isinstance(kernel, RemoteKernel):
            kernel.restart()
        else:
            raise ToolError(
                f"kernel {kernel.kernel_id} was started by someone else (--existing): "
                "kernelwire mcp does not restart it"
            )

    @property
    def pid(self) -> int | None:
        return self.kernel.pid if isinstance(self.kernel, Kernel) else None

    @property
    def exit_code(self) -> int | None:
        return self.kernel.exit_code if isinstance(self.kernel, Kernel) else None


class KernelSource:
    """Where kernels come from: local kernel specs, or a Jupyter Server's (``--server``)."""

    def __init__(self, server: JupyterServer | None = None) -> None:
        self.server = server

    def specs(self) -> list[dict[str, Any]]:
        """The kernel specs start_kernel can start: name, display name, language."""
        if self.server is None:
            return [
                {"name": name, "display_name": spec.display_name, "language": spec.language}
                for name, spec in sorted(list_kernel_specs().items())
            ]
        return [
            {"name": name, "display_name": display_name, "language": language}
            for name, (display_name, language) in sorted(
                self.server.kernel_spec_summaries().items()
            )
        ]

    def start(self, kernel_name: str) -> _Entry:
        """A new kernel of spec ``kernel_name``."""
        if self.server is None:
            kernel = start_kernel(kernel_name)
            return _Entry(kernel, kernel.spec.name, kernel.spec.language)
        remote = self.server.start_kernel(kernel_name)
        return _Entry(remote, remote.name or kernel_name)


class KernelRegistry:
    """The kernels each MCP session started, by session, and the attached kernels every
    session sees (``--existing``: shared on purpose)."""

    def __init__(
        self, source: KernelSource | None = None, attached: list[_Entry] | None = None
    ) -> None:
        self.source = source or KernelSource()
        self._attached = {entry.kernel.kernel_id: entry for entry in attached or []}
        self._sessions: dict[Session, dict[str, _Entry]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._under_way = 0  # starts and shutdowns in other threads
        self._idle = threading.Condition(self._lock)

    def start(self, session: Session, kernel_name: str) -> _Entry:
        """Start a kernel of spec ``kernel_name`` for ``session``."""
        with self._lock:
            if self._closed:
                raise ToolError("the server is shutting down")
            self._under_way += 1
        try:
            entry = self.source.start(kernel_name)
            with self._lock:
                closed = self._closed
                if not closed:
                    self._sessions.setdefault(session, {})[entry.kernel.kernel_id] = entry
            if closed:  # the server stopped while it started
                entry.stop(now=True)
                raise ToolError("the server is shutting down")
        finally:
            self._done()
        return entry

    def entries(self, session: Session) -> dict[str, _Entry]:
        """``session``'s kernels by id, the attached ones first."""
        with self._lock:
            return {**self._attached, **self._sessions.get(session, {})}

    def get(self, session: Session, kernel_id: str) -> _Entry:
        """``session``'s kernel ``kernel_id``; a :class:`ToolError` naming the ones it has."""
        entries = self.entries(session)
        entry = entries.get(kernel_id)
        if entry is None:
            known = ", ".join(entries) or "none: call start_kernel first"
            raise ToolError(f"no kernel {kernel_id!r} in this session (its kernels: {known})")
        if entry.dead is not None:
            raise ToolError(entry.dead)
        return entry

    def stop(self, session: Session, kernel_id: str) -> bool:
        """Shut down ``session``'s kernel ``kernel_id``; False if it has none of that id."""
        if kernel_id in self._attached:
            raise ToolError(
                f"kernel {kernel_id} was started by someone else (--existing): it keeps "
                "running, and stays usable here"
            )
        with self._lock:
            entry = self._sessions.get(session, {}).pop(kernel_id, None)
            if entry is None:
                return False
            self._under_way += 1
        try:
            entry.stop(now=entry.dead is not None)
        finally:
            self._done()
        return True

    def shutdown_session(self, session: Session) -> None:
        """Shut down ``session``'s kernels (the session ended)."""
        with self._lock:
            entries = list(self._sessions.pop(session, {}).values())
            self._under_way += 1
        try:
            _shutdown(entries)
        finally:
            self._done()

    def _done(self) -> None:
        """A start or shutdown counted in ``_under_way`` (which :meth:`shutdown_all`
        waits for) ended."""
        with self._lock:
            self._under_way -= 1
            self._idle.notify_all()

    def shutdown_all(self, wait: float = STOP_WAIT) -> None:
        """Shut down every session's kernels and disconnect from the attached ones, and
        wait (up to ``wait`` seconds) for starts and shutdowns other threads have under
        way: the program may exit right after, which would cut them short and leave
        their connection files behind (seen in a test: a SIGTERM just after a session
        ended). No kernel can be started afterwards."""
        with self._lock:
            self._closed = True
            entries = [e for kernels in self._sessions.values() for e in kernels.values()]
            entries += self._attached.values()
            self._sessions.clear()
        _shutdown(entries)
        with self._lock:
            if not self._idle.wait_for(lambda: self._under_way == 0, wait):
                left = self._under_way
                log.warning(
                    "%d kernel start(s) or shutdown(s) still under way after %g s", left, wait
                )


def _shutdown(entries: list[_Entry]) -> None:
    for entry in entries:
        try:
            entry.stop(now=entry.dead is not None)
        except KernelwireError as exc:  # the next kernel must still be stopped
            log.warning("shutting down kernel %s failed: %s", entry.kernel.kernel_id, exc)


def mark_dead(entry: _Entry, error: KernelwireError) -> ToolError:
    """Record that ``entry``'s kernel died (removing its files); the tool error to raise."""
    kernel = entry.kernel
    code = entry.exit_code
    how = f"exit code {code}" if code is not None else str(error)
    advice = (
        "reconnect once it runs again"
        if entry.attached
        else "shut it down with shutdown_kernel and start a new one with start_kernel"
    )
    entry.dead = (
        f"kernel {kernel.kernel_id} ({entry.name}) died ({how}); its variables are lost: {advice}"
    )
    entry.stop(now=True)
    return ToolError(entry.dead)


def _image_data(value: object) -> str | None:
    """``value`` as clean base64 (a notebook may wrap it in lines), or ``None`` if it is not."""
    if not isinstance(value, str):
        return None
    data = "".join(value.split())
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data


def _rich(output: OutputNode, texts: list[str], images: list[ImageContent]) -> None:
    """A display or result: its images as image content, its ``text/plain``, and the
    names of the other MIME types a model cannot see here."""
    data: dict[str, Any] = dict(output.get("data", {}))
    shown = []
    for mime in IMAGE_TYPES:
        image = _image_data(data.get(mime))
        if image is not None:
            images.append(ImageContent(type="image", data=image, mime_type=mime))
            shown.append(mime)
    others = [m for m in data if m not in shown and m != "text/plain"]
    text = data.get("text/plain")
    if isinstance(text, str) and not shown:  # an image's text/plain is just its repr
        count = output.get("execution_count")
        texts.append(f"Out[{count}]: {text}" if count is not None else text)
    if others:
        texts.append(f"[also shown as: {', '.join(others)}]")


class OverflowFiles:
    """Where the text past :data:`MAX_TEXT_CHARS` of a call goes: one file per call in a
    folder of the server's own, removed when the server stops."""

    def __init__(self) -> None:
        self._folder: str | None = None
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def keep(self, text: str) -> str:
        """Write ``text`` to a new file; its path."""
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix="kernelwire-mcp-")
            path = os.path.join(self._folder, f"output-{next(self._count)}.txt")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def cap(self, text: str) -> str:
        """``text``, or its first :data:`MAX_TEXT_CHARS` characters and where the rest is."""
        if len(text) <= MAX_TEXT_CHARS:
            return text
        path = self.keep(text)
        return (
            f"{text[:MAX_TEXT_CHARS]}\n[kernelwire mcp: {len(text) - MAX_TEXT_CHARS:,} more "
            f"characters not shown; the whole output ({len(text):,} characters) is in {path}]"
        )

    def remove(self) -> None:
        """Remove the files (the server stops)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def result_content(
    result: ExecutionResult, cap: Callable[[str], str] = lambda text: text
) -> list[ContentBlock]:
    """What a run showed, for a model: streams, results, errors (without ANSI colours)
    as text, in order, passed through ``cap``; PNG and JPEG outputs as images after
    the text."""
    texts: list[str] = []
    images: list[ImageContent] = []
    for output in result.outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text = str(output.get("text", ""))
            texts.append(text if output.get("name") == "stdout" else f"[stderr]\n{text}")
        elif kind == "error":
            trace = strip_ansi("\n".join(output.get("traceback", [])))
            texts.append(trace or f"{output.get('ename')}: {output.get('evalue')}")
            if output.get("ename") == "StdinNotImplementedError":
                texts.append(STDIN_HINT)
        elif kind in ("display_data", "execute_result"):
            _rich(output, texts, images)
    text = "\n".join(t.rstrip("\n") for t in texts if t) or "(no output)"
    return [TextContent(type="text", text=cap(text)), *images]


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _describe(entry: _Entry) -> dict[str, Any]:
    alive = entry.dead is None and entry.kernel.is_alive()
    state = "dead" if entry.dead is not None else "alive" if alive else "stopped"
    return {
        "kernel_id": entry.kernel.kernel_id,
        "kernel_name": entry.name,
        "language": entry.language,
        "state": state,
        "pid": entry.pid if alive else None,
        "attached": entry.attached,
    }


class KernelTools:
    """The blocking work behind each tool; run on a worker thread by :func:`build_server`."""

    def __init__(self, registry: KernelRegistry) -> None:
        self.registry = registry
        self.overflow = OverflowFiles()
        self.files = NotebookFiles()

    @contextmanager
    def _alive(self, session: Session, kernel_id: str) -> Iterator[_Entry]:
        """``session``'s kernel ``kernel_id``, checked alive; a death while it is used is
        recorded and turned into a clear :class:`ToolError`."""
        entry = self.registry.get(session, kernel_id)
        try:
            if not entry.kernel.is_alive():
                raise KernelDied("the kernel is gone", exit_code=entry.exit_code)
            yield entry
        except KernelRestarted:
            raise ToolError(
                f"kernel {kernel_id} was restarted while the call waited: its variables are gone"
            ) from None
        except KernelDied as exc:
            raise mark_dead(entry, exc) from None
        except KernelwireError as exc:
            if not entry.kernel.is_alive():
                raise mark_dead(entry, exc) from None
            raise ToolError(f"kernel {kernel_id}: {exc}") from None

    def list_kernel_specs(self) -> str:
        return _json(self.registry.source.specs())

    def start_kernel(self, session: Session, kernel_name: str) -> str:
        try:
            entry = self.registry.start(session, kernel_name)
        except KernelwireError as exc:
            raise ToolError(f"could not start kernel {kernel_name!r}: {exc}") from None
        return _json({"kernel_id": entry.kernel.kernel_id, "kernel_name": entry.name})

    def list_kernels(self, session: Session) -> str:
        return _json([_describe(e) for e in self.registry.entries(session).values()])

    def shutdown_kernel(self, session: Session, kernel_id: str) -> str:
        if not self.registry.stop(session, kernel_id):
            self.registry.get(session, kernel_id)  # raises, naming the session's kernels
            raise ToolError(f"no kernel {kernel_id!r} in this session")
        return f"kernel {kernel_id} is shut down"

    def interrupt_kernel(self, session: Session, kernel_id: str) -> str:
        with self._alive(session, kernel_id) as entry:
            entry.kernel.interrupt()
        return f"kernel {kernel_id} was interrupted"

    def restart_kernel(self, session: Session, kernel_id: str) -> str:
        with self._alive(session, kernel_id) as entry:
            entry.restart()
        return f"kernel {kernel_id} was restarted: its variables are gone"

    def run_code(
        self,
        session: Session,
        kernel_id: str,
        code: str,
        timeout: float,
        asker: InputAsker | None = None,
    ) -> CallToolResult:
        content, _ = self._run(session, kernel_id, code, timeout, asker)
        return CallToolResult(content=content)

    def _run(
        self,
        session: Session,
        kernel_id: str,
        code: str,
        timeout: float,
        asker: InputAsker | None = None,
    ) -> tuple[list[ContentBlock], ExecutionResult | None]:
        """Run ``code``: what to show, and the result (``None`` if it timed out)."""
        with self._alive(session, kernel_id) as entry, entry.busy:
            try:
                result = entry.kernel.run(
                    code, timeout=timeout, stdin=asker, max_output_chars=MAX_OUTPUT_CHARS
                )
            except KernelTimeout as exc:
                return self._timed_out(entry, exc, timeout), None
        content = result_content(result, self.overflow.cap)
        notes = [TextContent(type="text", text=note) for note in (asker.notes if asker else [])]
        return [*content, *notes], result

    def read_notebook(self, path: str) -> str:
        return self.overflow.cap(_json(self._notebook(lambda: self.files.summary(path))))

    def insert_cell(self, path: str, index: int, source: str, cell_type: str) -> str:
        return self._notebook(lambda: self.files.insert_cell(path, index, source, cell_type))

    def replace_cell(self, path: str, index: int, source: str) -> str:
        return self._notebook(lambda: self.files.replace_cell(path, index, source))

    def delete_cell(self, path: str, index: int) -> str:
        return self._notebook(lambda: self.files.delete_cell(path, index))

    def execute_cell(
        self,
        session: Session,
        kernel_id: str,
        path: str,
        index: int,
        timeout: float,
        asker: InputAsker | None = None,
    ) -> CallToolResult:
        source, cell_id = self._notebook(lambda: self.files.code_cell(path, index))
        content, result = self._run(session, kernel_id, source, timeout, asker)
        if result is not None:
            written = self._notebook(lambda: self.files.write_outputs(path, index, cell_id, result))
        else:
            written = "the run timed out: the cell's outputs in the file were left as they were"
        note = TextContent(type="text", text=f"[kernelwire mcp: {written}]")
        return CallToolResult(content=[*content, note])

    def run_notebook(
        self,
        path: str,
        kernel_name: str | None,
        cell_timeout: float,
        cell_done: Callable[[int], None] | None = None,
    ) -> str:
        from .notebook import cells_to_run, execute, write

        resolved = self._notebook(lambda: self.files.resolve(path))
        try:
            nb = execute(
                resolved,
                kernel_name,
                timeout=cell_timeout,
                save_to=resolved,
                on_cell_done=(lambda index, _: cell_done(index)) if cell_done else None,
            )
        except KernelwireError as exc:
            trace = strip_ansi("\n".join(getattr(exc, "traceback", [])))
            raise ToolError(self.overflow.cap(f"{path}: {exc}\n{trace}".rstrip())) from None
        write(nb, resolved)
        ran = len(cells_to_run(nb))
        return f"ran {ran} code cells of {path} on a new kernel; their outputs are in the file"

    @staticmethod
    def _notebook(work: Callable[[], _T]) -> _T:
        """``work()``, its notebook errors as tool errors."""
        try:
            return work()
        except NotebookEditError as exc:
            raise ToolError(str(exc)) from None

    def _timed_out(self, entry: _Entry, exc: KernelTimeout, timeout: float) -> list[ContentBlock]:
        """A run interrupted at its timeout: what it printed, and that it was interrupted.

        A kernel that did not go idle after the interrupt (code that ignores
        KeyboardInterrupt) is restarted, so that nothing runs behind the returned call.
        """
        partial: ExecutionResult | None = getattr(exc, "result", None)
        content = result_content(partial, self.overflow.cap) if partial is not None else []
        note = f"[kernelwire mcp: interrupted after {timeout:g} s (the timeout)]"
        if partial is None and entry.attached:
            note = (
                f"[kernelwire mcp: interrupted after {timeout:g} s (the timeout), but it kept "
                "running; the kernel is not this server's (--existing), so it was not "
                "restarted: interrupt it again, or ask its owner]"
            )
        elif partial is None:
            entry.restart(now=True)
            note = (
                f"[kernelwire mcp: interrupted after {timeout:g} s (the timeout), but it kept "
                "running: the kernel was restarted and its variables are gone]"
            )
        if content and isinstance(content[0], TextContent) and content[0].text != "(no output)":
            content[0] = TextContent(type="text", text=f"{content[0].text}\n{note}")
        else:
            content[:1] = [TextContent(type="text", text=note)]
        return content


KernelId = Annotated[str, Field(description="A kernel id from start_kernel or list_kernels.")]
NotebookPath = Annotated[
    str, Field(description="A .ipynb file, absolute or relative to the server's directory.")
]
RunTimeout = Annotated[
    float, Field(gt=0, description="Seconds to allow; then the run is interrupted.")
]
CellIndex = Annotated[
    int, Field(ge=0, description="A cell's index (0 first), as read_notebook shows.")
]


def _session(ctx: Context[Any, Any], registry: KernelRegistry) -> Session:
    """The calling client's connection (one per stdio process, one per HTTP session),
    the key of its kernels; they are shut down when it closes."""
    # The SDK builds a ServerSession per request around the connection-scoped
    # Connection, and mcp 2.3 gives a handler no public way to reach the latter.
    connection = ctx.request_context.session._connection
    if "kernelwire" not in connection.state:
        connection.state["kernelwire"] = True

        async def end() -> None:
            await anyio.to_thread.run_sync(registry.shutdown_session, connection)

        connection.exit_stack.push_async_callback(end)
    return connection


def build_server(tools: KernelTools) -> MCPServer[Any]:
    """The MCP server: its tools are ``tools``' (on ``tools.registry``'s kernels)."""
    registry = tools.registry
    server: MCPServer[Any] = MCPServer(
        "kernelwire",
        instructions=(
            "Run code on Jupyter kernels. Start a kernel with start_kernel, run code on it "
            "with run_code (its variables persist between calls), shut it down when done. "
            "Notebooks: read_notebook, insert_cell / replace_cell / delete_cell, "
            "execute_cell (on a kernel you started; outputs go into the file), run_notebook."
        ),
        log_level="WARNING",
    )

    async def call(work: Callable[[], _T]) -> _T:
        return await anyio.to_thread.run_sync(work)

    async def reporting(
        ctx: Context[Any, Any], work: Callable[[], _T], note: Callable[[], str] | None = None
    ) -> _T:
        """``work()`` on a thread; meanwhile, every :data:`PROGRESS_INTERVAL`, a progress
        notification (seconds so far, and ``note()``) if the client asked for them."""
        meta = ctx.request_context.meta
        if not meta or meta.get("progress_token") is None:
            # No token, no notifications: skip the ticking task and its task group,
            # which cost about half a millisecond a call (bench/mcp_overhead.py).
            return await call(work)
        done = anyio.Event()
        started = time.monotonic()

        async def tick() -> None:
            while True:
                with anyio.move_on_after(PROGRESS_INTERVAL):
                    await done.wait()
                    return
                elapsed = time.monotonic() - started
                said = f"running for {elapsed:.0f} s" + (f": {note()}" if note else "")
                await ctx.report_progress(elapsed, None, said)

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            try:
                result = await call(work)
            except Exception as exc:  # raised below: out of a task group it would come
                failure = exc  # wrapped in an ExceptionGroup, and the SDK would not show it
            finally:
                done.set()
        if failure is not None:
            raise failure
        return result

    @server.tool(structured_output=False)
    async def list_kernel_specs() -> str:
        """List the installed kernel specs (languages) that start_kernel can start."""
        return await call(tools.list_kernel_specs)

    @server.tool(structured_output=False)
    async def start_kernel(
        ctx: Context[Any, Any],
        kernel_name: Annotated[
            str, Field(description="A kernel spec name from list_kernel_specs.")
        ] = "python3",
    ) -> str:
        """Start a new kernel (a fresh, empty namespace) and return its kernel_id."""
        session = _session(ctx, registry)
        return await call(lambda: tools.start_kernel(session, kernel_name))

    @server.tool(structured_output=False)
    async def list_kernels(ctx: Context[Any, Any]) -> str:
        """List the kernels this session started, with their ids and whether they are alive."""
        session = _session(ctx, registry)
        return await call(lambda: tools.list_kernels(session))

    @server.tool(structured_output=False)
    async def shutdown_kernel(ctx: Context[Any, Any], kernel_id: KernelId) -> str:
        """Shut down a kernel of this session; its variables are lost."""
        session = _session(ctx, registry)
        return await call(lambda: tools.shutdown_kernel(session, kernel_id))

    @server.tool(structured_output=False)
    async def run_code(
        ctx: Context[Any, Any],
        kernel_id: KernelId,
        code: Annotated[str, Field(description="The code to run, as in a notebook cell.")],
        timeout: RunTimeout = 30,
    ) -> CallToolResult:
        """Run code on a kernel; returns its printed output, result, error and images."""
        session = _session(ctx, registry)
        asker = input_asker(ctx, timeout)
        return await reporting(
            ctx, lambda: tools.run_code(session, kernel_id, code, timeout, asker)
        )

    @server.tool(structured_output=False)
    async def interrupt_kernel(ctx: Context[Any, Any], kernel_id: KernelId) -> str:
        """Interrupt the code a kernel is running (KeyboardInterrupt); variables are kept."""
        session = _session(ctx, registry)
        return await call(lambda: tools.interrupt_kernel(session, kernel_id))

    @server.tool(structured_output=False)
    async def restart_kernel(ctx: Context[Any, Any], kernel_id: KernelId) -> str:
        """Restart a kernel: same kernel_id, but all its variables and imports are lost."""
        session = _session(ctx, registry)
        return await call(lambda: tools.restart_kernel(session, kernel_id))

    @server.tool(structured_output=False)
    async def read_notebook(path: NotebookPath) -> str:
        """Read a notebook: each cell's index, id, type, source and a short form of its outputs."""
        return await call(lambda: tools.read_notebook(path))

    @server.tool(structured_output=False)
    async def insert_cell(
        path: NotebookPath,
        source: Annotated[str, Field(description="The new cell's source.")],
        index: Annotated[
            int, Field(ge=-1, description="Where it goes (0 first; -1 at the end).")
        ] = -1,
        cell_type: Annotated[str, Field(description="code, markdown or raw.")] = "code",
    ) -> str:
        """Insert a cell into a notebook (the file is created if it does not exist)."""
        return await call(lambda: tools.insert_cell(path, index, source, cell_type))

    @server.tool(structured_output=False)
    async def replace_cell(
        path: NotebookPath,
        index: CellIndex,
        source: Annotated[str, Field(description="The cell's new source.")],
    ) -> str:
        """Replace a cell's source; a code cell's old outputs are cleared."""
        return await call(lambda: tools.replace_cell(path, index, source))

    @server.tool(structured_output=False)
    async def delete_cell(path: NotebookPath, index: CellIndex) -> str:
        """Delete a cell from a notebook."""
        return await call(lambda: tools.delete_cell(path, index))

    @server.tool(structured_output=False)
    async def execute_cell(
        ctx: Context[Any, Any],
        kernel_id: KernelId,
        path: NotebookPath,
        index: CellIndex,
        timeout: RunTimeout = 30,
    ) -> CallToolResult:
        """Run a notebook's code cell on a kernel and write its outputs into the file."""
        session = _session(ctx, registry)
        asker = input_asker(ctx, timeout)
        return await reporting(
            ctx, lambda: tools.execute_cell(session, kernel_id, path, index, timeout, asker)
        )

    @server.tool(structured_output=False)
    async def run_notebook(
        ctx: Context[Any, Any],
        path: NotebookPath,
        kernel_name: Annotated[
            str | None, Field(description="Kernel spec (default: the notebook's).")
        ] = None,
        cell_timeout: Annotated[float, Field(gt=0, description="Seconds each cell may take.")] = 60,
    ) -> str:
        """Run a whole notebook, top to bottom, on a new kernel; outputs are written into it."""
        cells: list[int] = []  # the cells done so far, for the progress notes
        return await reporting(
            ctx,
            lambda: tools.run_notebook(path, kernel_name, cell_timeout, cells.append),
            lambda: f"{len(cells)} cells done",
        )

    return server


def attach(connection_file: str) -> _Entry:
    """The kernel of ``connection_file``, attached to (``--existing``)."""
    kernel = ExistingKernel(connection_file)
    info = kernel.client().kernel_info(reply=True, timeout=30)["content"]
    language = info.get("language_info", {}).get("name", "")
    return _Entry(kernel, info.get("implementation", "existing"), language)


def serve(
    http: tuple[str, int] | None = None,
    server: JupyterServer | None = None,
    existing: list[str] | None = None,
) -> None:
    """Run the server over stdio (or streamable HTTP at ``http``) until its client
    leaves or a signal stops it; then shut every kernel down. ``server``: kernels are
    started there; ``existing``: connection files of kernels every session may use
    (never stopped here).

    The server runs on a thread of its own: the main thread, where Python delivers
    signals, only waits. A SIGTERM (raised there as an exception by the command's
    handler) would otherwise land in the event loop, whose clean-up then waits for its
    thread blocked reading stdin, forever, with the kernels still running.
    """
    attached: list[_Entry] = []
    try:
        for connection_file in existing or []:
            attached.append(attach(connection_file))
    except BaseException:
        _shutdown(attached)
        raise
    registry = KernelRegistry(KernelSource(server), attached)
    tools = KernelTools(registry)
    mcp_server = build_server(tools)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if http is None:
                anyio.run(mcp_server.run_stdio_async)
            else:
                host, port = http
                anyio.run(lambda: mcp_server.run_streamable_http_async(host=host, port=port))
        except BaseException as exc:  # handed to the main thread, which reports it
            failure.append(exc)

    thread = threading.Thread(target=run, name="kernelwire-mcp", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    finally:
        registry.shutdown_all()
        tools.overflow.remove()
    if failure:
        raise failure[0]
