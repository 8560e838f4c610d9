"""Execute notebooks: every code cell in order, outputs kept as nbclient keeps them.

>>> nb = kernelwire.notebook.execute("analysis.ipynb", timeout=600)   # doctest: +SKIP
>>> nbformat.write(nb, "analysis.out.ipynb")                          # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import nbformat
from nbformat import NotebookNode

from ._saving import Autosave, write_atomic
from ._stopping import stop_early
from .errors import (
    CellExecutionError,
    CellKernelDied,
    KernelDied,
    KernelTimeout,
    KernelwireError,
    NotebookError,
    cell_label,
)
from .execution import OutputCollector, as_execution_count
from .lifecycle.kernel import Kernel, start_kernel
from .lifecycle.launcher import STARTUP_TIMEOUT
from .lifecycle.pool import KernelPool
from .lifecycle.specs import get_kernel_spec
from .outputs import OutputNode
from .protocol import requests
from .protocol.jsonutil import format_date
from .protocol.message import Message
from .remote import JupyterServer, RemoteKernel
from .widgets import WidgetFrontEnd

log = logging.getLogger("kernelwire.notebook")

CellHook = Callable[[int, NotebookNode], None]
OutputHook = Callable[[int, Message], None]
"""Called with a cell's index and each output message of it (``stream``,
``display_data``, ``execute_result``, ``error``) as it arrives."""
SKIP_TAG = "skip-execution"
"""The tag of cells a run skips by default (nbclient's ``skip_cells_with_tag``)."""
OUTPUT_TYPES = frozenset({"stream", "display_data", "execute_result", "error"})
IPYTHON_HISTORY_FILE = ":memory:"
"""Where IPython kernels started for a notebook keep their history (nbclient's default)."""


def read(path: str | os.PathLike[str] | TextIO) -> NotebookNode:
    """Read and validate a notebook (a path, or an open text file such as ``sys.stdin``);
    :class:`NotebookError` says what is wrong with it."""
    if not isinstance(path, (str, os.PathLike)):
        source: Any = path
        path = getattr(path, "name", "<stream>")
    else:
        source = os.fspath(path)
    try:
        nb: NotebookNode = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotebookError(f"{path}: not a readable notebook: {exc}") from None
    # A v2 or v3 file comes back converted, but in nbformat's older node class, which
    # the rest of nbformat (and a later isinstance check) does not take for a notebook.
    nb = _node(nb)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        # nbclient runs what nbformat can read and only warns (a kernelspec without
        # ``name`` is common); refuse only what cannot be run at all.
        problem = _unrunnable(nb)
        if problem:
            raise NotebookError(f"{path}: not a valid notebook: {problem}") from None
        log.warning("%s: not a valid notebook (%s); running it anyway", path, exc.message)
    return nb


def write(nb: NotebookNode, path: str | os.PathLike[str]) -> None:
    """Write a notebook as nbformat writes it, but whole or not at all: to a temporary
    file beside ``path``, then renamed over it, so that a reader (or a run killed while
    it writes) never finds half a notebook."""
    write_atomic(path, nbformat.writes(nb).encode())  # type: ignore[no-untyped-call]


def _unrunnable(nb: NotebookNode) -> str | None:
    """Why ``nb`` cannot be run (cells that are not cells), or ``None``."""
    cells = nb.get("cells")
    if not isinstance(cells, list):
        return "'cells' is not a list"
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            return f"cell {index} is not a cell"
        if cell["cell_type"] == "code" and not isinstance(cell.get("source"), str):
            return f"cell {index} has no source"
    if not isinstance(nb.get("metadata"), dict):
        return "'metadata' is not an object"
    return None


def _node(nb: dict[str, Any]) -> NotebookNode:
    """``nb`` as nbformat's :class:`NotebookNode` (the same object when it is one)."""
    if type(nb) is NotebookNode:
        return nb
    return nbformat.from_dict(nb)  # type: ignore[no-untyped-call,no-any-return]


def kernel_name_of(nb: NotebookNode, default: str = "python3") -> str:
    """The kernel named in the notebook's metadata (``default`` when it names none).

    ``python`` means ``python3``, as jupyter_client's kernel manager reads it.
    """
    spec = nb.get("metadata", {}).get("kernelspec", {})
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or not name:
        return default
    return "python3" if name == "python" else name


def execute(
    nb_or_path: NotebookNode | str | os.PathLike[str],
    kernel_name: str | None = None,
    timeout: float | None = None,
    allow_errors: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    *,
    pool: KernelPool | None = None,
    server: JupyterServer | None = None,
    kernel: Kernel | RemoteKernel | None = None,
    front_end: bool = False,
    max_output_chars: int | None = None,
    history_file: str | None = IPYTHON_HISTORY_FILE,
    on_cell_start: CellHook | None = None,
    on_cell_done: CellHook | None = None,
    on_output: OutputHook | None = None,
    own_kernel: bool = False,
    parameters: Mapping[str, Any] | None = None,
    input_path: str | None = None,
    fork: bool = False,
    save_to: str | os.PathLike[str] | None = None,
    skip_tag: str = SKIP_TAG,
    kernel_env: Mapping[str, str] | None = None,
    launch_timeout: float | None = None,
) -> NotebookNode:
    """Run every code cell of a notebook in order and return it with its outputs.

    The kernel is the notebook's (``metadata.kernelspec.name``) unless ``kernel_name``
    is given; ``pool`` lends a ready kernel instead of starting one (it is given back,
    restarted); ``server`` runs it on a Jupyter Server or Gateway instead; ``kernel``
    runs it on a kernel you started (left running, namespace and all). With ``server``,
    ``kernel_env`` and ``launch_timeout`` go to :meth:`JupyterServer.start_kernel
    <kernelwire.remote.JupyterServer.start_kernel>` as ``env`` and ``launch_timeout`` (an
    Enterprise Gateway's ``KERNEL_USERNAME``, a pod that takes minutes to schedule).
    Cells tagged ``skip_tag`` (``skip-execution``, as nbclient's default) are skipped; an
    error in a cell stops the run with :class:`CellExecutionError` (naming the cell)
    unless ``allow_errors`` or the cell is tagged ``raises-exception``. ``timeout`` applies per
    cell (``None``, 0 or less: no limit, as in nbclient): the kernel is interrupted and
    :class:`KernelTimeout` raised.
    Outputs are kept as nbclient keeps them;
    ``front_end=True`` merges streams and applies ``\\r``/``\\b`` as JupyterLab does;
    ``max_output_chars`` caps the text a cell keeps, with a marker saying how much was
    dropped (see :class:`~kernelwire.execution.OutputCollector`).
    A cell that does not end within 3 s (``STOP_GRACE``) of being interrupted (its
    timeout, Ctrl-C) gets its kernel stopped at once when the kernel is the run's own
    (started here, or ``kernel`` with ``own_kernel=True``).
    Each executed cell gets nbclient's ``metadata.execution`` timestamps. An IPython
    kernel started here keeps its history in ``history_file``, as nbclient's do (see
    :func:`start_notebook_kernel`). ``fork=True`` forks the kernel it starts from a warm
    template (see :class:`~kernelwire.ForkServer`) instead of spawning it.

    ``parameters`` (a dict, even empty) runs it the papermill way: the values go into
    an ``injected-parameters`` cell (see :func:`kernelwire.parameters.inject`), and the
    notebook and its cells get papermill's ``metadata.papermill`` (parameters, timings,
    statuses; ``input_path``: ``input_path``, else the path given), so papermill's tools
    read the result. A kernel language with no translator raises
    :class:`~kernelwire.errors.NoParameterTranslator` before any kernel starts.

    ``save_to`` keeps that file up to date while the notebook runs, a little after each
    cell (see :class:`~kernelwire._saving.Autosave` for the pace), and when it ends or
    stops: a run killed mid-way leaves the cells done so far on disk. Each write is
    atomic. The file is plain JSON, not nbformat's layout; write the returned notebook
    with :func:`write` for that.

    ``on_output(index, msg)`` sees each output message of a cell as it arrives, whole
    (before ``max_output_chars`` caps what the cell keeps), except what an Output widget
    captures: for logs that follow a run live.
    """
    if isinstance(nb_or_path, dict):
        nb = _node(nb_or_path)
    else:
        nb = read(nb_or_path)
        input_path = input_path or os.fspath(nb_or_path)
    record = None
    if parameters is not None:
        from . import parameters as papermill_way

        spec = kernel.spec if isinstance(kernel, Kernel) else None  # the kernel it runs on
        papermill_way.inject(
            nb, parameters, spec.name if spec else kernel_name, spec.language if spec else None
        )
        record = papermill_way.PapermillRecord(nb, input_path)
    if timeout is not None and timeout <= 0:
        timeout = None  # nbclient's reading: 0 and -1 mean no limit
    _check_remote_options(server is not None, kernel_env, launch_timeout)
    name = kernel_name or kernel_name_of(nb)
    owned = own_kernel or (kernel is None and pool is None)
    with ExitStack() as stack:
        if kernel is None:
            kernel = _own_kernel(
                stack, name, server, pool, cwd, history_file, fork, kernel_env, launch_timeout
            )
        client = kernel.client()
        stack.callback(client.stop_channels)
        info = client.kernel_info(reply=True, timeout=60)["content"].get("language_info")
        if info and isinstance(info, dict):
            nb.metadata["language_info"] = info
        # Saved from here on, once a kernel answers: a kernel that cannot start leaves
        # no file behind.
        autosave = Autosave(nb, save_to) if save_to is not None else None
        guard: AbstractContextManager[Any] = nullcontext()
        if autosave is not None:
            stack.callback(autosave.close)  # after widgets and timings, before shutdown
            guard = autosave.lock
        displays: dict[str, list[OutputNode]] = {}
        widgets = WidgetFrontEnd(lambda comm_id, data: client.comm_msg(comm_id, data))
        stack.callback(_guarded, guard, widgets.save, nb)  # a partial run's widgets render too
        if record is not None:
            stack.callback(_guarded, guard, record.finish)
        for index in cells_to_run(nb, skip_tag):
            cell = nb.cells[index]
            tags = cell.get("metadata", {}).get("tags", [])
            if on_cell_start is not None:
                on_cell_start(index, cell)
            if record is not None:
                with guard:
                    record.cell_started(index)
            collector = OutputCollector(
                front_end=front_end,
                max_output_chars=max_output_chars,
                displays=displays,
                node_from=nbformat.from_dict,  # a notebook's outputs are nbformat's own nodes
            )
            try:
                shown = None if on_output is None else partial(on_output, index)
                reply = _run_cell(
                    kernel, client, index, cell, timeout, collector, widgets, owned, guard, shown
                )
            except BaseException:  # a timeout, the kernel's death, Ctrl-C: recorded, raised
                if record is not None:
                    with guard:
                        record.cell_done(index, failed=True)
                raise
            # The reply's status decides, as in nbclient: a failed line magic replies
            # ``error`` with only a stderr line, and an error shown inside an Output
            # widget is no failure of the cell.
            failed = reply["content"].get("status") == "error" and not (
                allow_errors or "raises-exception" in tags
            )
            if record is not None:
                with guard:
                    record.cell_done(index, failed)
            if autosave is not None:
                autosave.changed()
            if on_cell_done is not None:
                on_cell_done(index, cell)
            if failed:
                raise _cell_error(index, cell, reply["content"])
    return nb


def _check_remote_options(
    remote: bool, kernel_env: Mapping[str, str] | None, launch_timeout: float | None
) -> None:
    """``kernel_env`` and ``launch_timeout`` are for kernels started on a server only:
    refused rather than ignored for local ones."""
    if not remote and (kernel_env is not None or launch_timeout is not None):
        raise ValueError(
            "kernel_env and launch_timeout are for kernels started on a Jupyter Server or "
            "gateway (server= or servers=), not for local kernels"
        )


def hide_inputs(nb: NotebookNode) -> NotebookNode:
    """Hide every code cell's source (``metadata.jupyter.source_hidden``), as papermill's
    report mode does; ``nb`` is changed in place and returned."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.setdefault("metadata", {}).setdefault("jupyter", {})["source_hidden"] = True
    return nb


def _guarded(guard: AbstractContextManager[Any], func: Callable[..., Any], *args: Any) -> None:
    with guard:
        func(*args)


def cells_to_run(nb: NotebookNode, skip_tag: str = SKIP_TAG) -> list[int]:
    """The indices of the cells a run executes: code cells with some code, not tagged
    ``skip_tag``. Empty cells keep their outputs and count, as with nbclient."""
    return [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and cell.source.strip()
        and skip_tag not in cell.get("metadata", {}).get("tags", [])
    ]


def _cell_error(index: int, cell: NotebookNode, content: dict[str, Any]) -> CellExecutionError:
    """The error of a cell whose reply said ``error``: its error output, else the reply's."""
    shown = next((o for o in cell.outputs if o.output_type == "error"), None)
    source: Any = shown if shown is not None else content
    ename, evalue, traceback = (source.get(k) for k in ("ename", "evalue", "traceback"))
    return CellExecutionError(
        index,
        ename if isinstance(ename, str) else "error",
        evalue if isinstance(evalue, str) else "",
        [line for line in traceback if isinstance(line, str)]
        if isinstance(traceback, list)
        else [],
        as_execution_count(cell.get("execution_count")),
    )


def _own_kernel(
    stack: ExitStack,
    name: str,
    server: JupyterServer | None,
    pool: KernelPool | None,
    cwd: str | os.PathLike[str] | None,
    history_file: str | None,
    fork: bool = False,
    kernel_env: Mapping[str, str] | None = None,
    launch_timeout: float | None = None,
) -> Kernel | RemoteKernel:
    """A kernel for one run, released or shut down when ``stack`` closes."""
    if server is not None:
        remote = start_on_server(server, name, cwd, env=kernel_env, launch_timeout=launch_timeout)
        return stack.enter_context(remote)
    if pool is not None:
        kernel = pool.acquire()
        stack.callback(pool.release, kernel)
        return kernel
    return stack.enter_context(start_notebook_kernel(name, cwd, history_file, fork))


def start_on_server(
    server: JupyterServer,
    name: str,
    cwd: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    launch_timeout: float | None = None,
) -> RemoteKernel:
    """A kernel on ``server``; ``cwd`` is a folder on the server, relative to its root
    (Jupyter Server's ``path``), where the kernel runs (default: the root). ``env`` and
    ``launch_timeout`` are :meth:`JupyterServer.start_kernel`'s (an Enterprise Gateway's
    ``KERNEL_`` variables, a launch that may take long)."""
    where: dict[str, Any] = {} if cwd is None else {"path": os.fspath(cwd)}
    return server.start_kernel(name, env=env, launch_timeout=launch_timeout, **where)


def start_notebook_kernel(
    name: str,
    cwd: str | os.PathLike[str] | None = None,
    history_file: str | None = IPYTHON_HISTORY_FILE,
    fork: bool = False,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Kernel:
    """Start a kernel to run a notebook on, as nbclient starts one (within
    ``startup_timeout`` seconds, else :class:`~kernelwire.errors.KernelStartTimeout`;
    ``fork=True``: forked from the spec's shared template, see :class:`~kernelwire.ForkServer`).

    An IPython kernel keeps its history in ``history_file``: by default in memory, so
    running a notebook does not write (and wait on) the user's history database, which
    costs ipykernel about 1 ms of CPU per cell. ``None`` leaves the kernel's own setting.
    """
    spec = get_kernel_spec(name)
    extra = []
    if history_file and spec.is_ipykernel:
        extra.append(f"--HistoryManager.hist_file={history_file}")
    return start_kernel(
        spec,
        cwd=os.fspath(cwd) if cwd else None,
        extra_arguments=extra,
        startup_timeout=startup_timeout,
        fork=fork,
    )


def _run_cell(
    kernel: Kernel | RemoteKernel,
    client: Any,
    index: int,
    cell: NotebookNode,
    timeout: float | None,
    collector: OutputCollector,
    widgets: WidgetFrontEnd,
    owned: bool,
    guard: AbstractContextManager[Any],
    on_output: Callable[[Message], None] | None = None,
) -> Message:
    """Run one cell: its outputs, count and timings go into ``cell``; return the reply.

    On a timeout, Ctrl-C or SIGTERM the kernel is interrupted and the cell gets
    ``STOP_GRACE`` seconds to end; a kernel of our own whose cell does not end is
    stopped at once, since a busy kernel would only make its shutdown wait. Every
    change to ``cell`` (and, through displays updated, to other cells) is made holding
    ``guard``, the lock of the notebook's autosave.
    """
    with guard:
        cell.outputs = []
        cell.execution_count = None
        timing = cell.setdefault("metadata", {}).setdefault("execution", {})
    pending = client.submit(requests.execute(cell.source, allow_stdin=False))

    def consume(events: Iterable[tuple[str, Any]]) -> None:
        for channel, msg in events:
            with guard:
                output = _consume(collector, widgets, timing, channel, msg)
            if output and on_output is not None:
                on_output(msg)

    def settle() -> None:
        stop_early(kernel, lambda grace: consume(pending.events(grace)), owned)

    try:
        try:
            consume(pending.events(timeout))
        except KernelTimeout:
            settle()
            with guard:
                cell.outputs = collector.outputs
            label = cell_label(index, collector.execution_count)
            raise KernelTimeout(
                f"{label} did not finish within {timeout:g} s: interrupted"
            ) from None
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP in the CLI
            settle()
            with guard:
                cell.outputs = collector.outputs
            raise
        except KernelDied as died:
            with guard:
                cell.outputs = collector.outputs
            raise CellKernelDied(index, died, collector.execution_count) from died
    finally:
        pending.close()
    reply: Message = pending.reply(0)
    count = as_execution_count(reply["content"].get("execution_count"))
    with guard:
        cell.outputs = collector.outputs
        cell.execution_count = collector.execution_count if count is None else count
    return reply


def timestamp(msg: Any) -> str:
    """A message's header date as nbclient records it (ISO 8601, UTC)."""
    date = msg["header"].get("date")
    return format_date(date) if isinstance(date, datetime) else str(date)


def _consume(
    collector: OutputCollector,
    widgets: WidgetFrontEnd,
    timing: dict[str, str],
    channel: str,
    msg: Any,
) -> bool:
    """Take one message of a cell; whether it is an output of the cell."""
    msg_type = msg["msg_type"]
    if channel == "iopub":
        if msg_type == "status":
            state = msg["content"].get("execution_state")
            if state in ("busy", "idle"):
                timing[f"iopub.status.{state}"] = timestamp(msg)
        elif msg_type == "execute_input":
            timing["iopub.execute_input"] = timestamp(msg)
        if not widgets.feed(msg):  # an Output widget's capture is not the cell's
            collector.feed(msg)
            return msg_type in OUTPUT_TYPES
    elif channel == "shell":
        started = msg["metadata"].get("started")
        if started and isinstance(started, str):
            timing["shell.execute_reply.started"] = started
        timing["shell.execute_reply"] = timestamp(msg)
    return False


@dataclass
class NotebookRun:
    """One notebook of :func:`execute_many`: what ran, and the error that stopped it, if any."""

    source: str | None
    """The notebook's path, or ``None`` for a notebook given in memory."""
    notebook: NotebookNode | None
    """The notebook with its outputs so far (``None`` if it could not be read)."""
    error: KernelwireError | None = None
    """Why it stopped early: a cell's error, a timeout, a kernel that died or never started."""
    worker: str | None = None
    """The executor's worker it ran on (``execute_many(executor=...)``), else ``None``."""
    save_to: str | os.PathLike[str] | None = None
    """A file kept up to date while it runs (``execute``'s ``save_to``), or ``None``."""
    server: str | None = None
    """The URL of the Jupyter Server or gateway it ran on (``server=`` or ``servers=``;
    with ``servers=``, of its last attempt), else ``None``."""
    retried_from: str | None = None
    """With ``servers=``: the URL of the server it ran on first, which stopped answering
    while it ran, so it was run again from the start on :attr:`server`; else ``None``."""
    retry_cause: KernelwireError | None = None
    """The error its first attempt failed with on :attr:`retried_from`, else ``None``."""
    parameters: Mapping[str, Any] | None = None
    """This notebook's own parameters (``execute``'s), used instead of the batch's
    (``execute_many``'s ``parameters``) when not ``None``."""

    @property
    def ok(self) -> bool:
        """Whether every cell ran (errors allowed by ``allow_errors`` or tags count as ran)."""
        return self.error is None


NotebookHook = Callable[[int, NotebookRun], None]


def execute_many(
    notebooks: Iterable[NotebookRun | NotebookNode | str | os.PathLike[str]],
    kernel_name: str | None = None,
    timeout: float | None = None,
    allow_errors: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    *,
    jobs: int = 1,
    server: JupyterServer | None = None,
    servers: Sequence[JupyterServer] | None = None,
    kernel_env: Mapping[str, str] | None = None,
    launch_timeout: float | None = None,
    front_end: bool = False,
    max_output_chars: int | None = None,
    history_file: str | None = IPYTHON_HISTORY_FILE,
    on_notebook_start: NotebookHook | None = None,
    on_notebook_done: NotebookHook | None = None,
    on_cell_start: CellHook | None = None,
    on_cell_done: CellHook | None = None,
    on_output: OutputHook | None = None,
    parameters: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    fork: bool = False,
    skip_tag: str = SKIP_TAG,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> list[NotebookRun]:
    """Execute notebooks, each on a fresh kernel of its own; return them in the order given.

    Runs each as :func:`execute` would, but starts a notebook's kernel while the one
    before it runs and shuts finished kernels down in the background, so kernel start-up
    and shutdown mostly leave the critical path. ``jobs`` notebooks run at once (each
    takes the next one not yet begun); a notebook's hooks are all called on one thread,
    but with ``jobs > 1`` different notebooks' hooks come from different threads. A
    notebook that fails does not stop the others: its :class:`NotebookRun` carries the
    error. ``cwd`` defaults to each notebook file's own directory (the current directory
    for a notebook given in memory); ``server`` runs them on a Jupyter Server or Gateway
    instead (each run's ``server`` names it), and ``servers`` spreads them over several
    (see below); ``kernel_env`` and ``launch_timeout`` are then :func:`execute`'s, for
    every kernel. Notebooks already read by :func:`prepare` are not read again. Every kernel
    is shut down when this returns or raises. ``parameters`` go into every notebook as
    :func:`execute` puts them; a notebook they cannot go into (its kernel's language has
    no translator) fails with that error before its kernel starts. Local kernels get
    ``startup_timeout`` seconds to start (a notebook whose kernel does not answer in
    time fails with :class:`~kernelwire.errors.KernelStartTimeout`); ``skip_tag``,
    ``save_to`` (of each :class:`NotebookRun`) and ``on_output`` are :func:`execute`'s.
    ``fork=True`` forks each kernel from the spec's warm template (see
    :class:`~kernelwire.ForkServer`). A :class:`NotebookRun` given with ``parameters``
    of its own runs with those instead of the batch's.

    With ``executor`` (a ``concurrent.futures.Executor``: Dask's
    ``client.get_executor()``, a process pool, ...) each notebook runs as a task on it,
    ``jobs`` at a time, on a kernel its worker starts (see
    :mod:`kernelwire.notebook_executor`); cell and output hooks are not called then, nor
    is ``save_to`` kept, and ``cwd`` (by default the notebook's folder) must exist on
    the workers.

    With ``servers`` (``JupyterServer`` handles from :func:`~kernelwire.connect_server`:
    Jupyter Servers, Kernel Gateways, Enterprise Gateways, in any mix) each notebook's
    kernel starts on the next server in turn, so the ``jobs`` notebooks running at once
    are spread over them; ``run.server`` is the URL it ran on. When a notebook fails for
    a reason that may not be its own (a cell's error, bad parameters, an unknown kernel
    never count) and its server then does not answer within 10 s, that server is lost:
    it gets no more notebooks, and each notebook that failed on it runs again from the
    start, once, on another server (with a warning on the ``kernelwire.notebook``
    logger; ``run.retried_from`` is the lost server's URL, ``run.retry_cause`` the first
    attempt's error, and ``on_notebook_start`` is called again for the new attempt). A
    notebook that cannot move (moved once already, or no server left) fails with
    :class:`~kernelwire.errors.ServerLost`. See :mod:`kernelwire._spread`.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if server is not None and servers is not None:
        raise ValueError("give server or servers, not both")
    if servers is not None and not servers:
        raise ValueError("servers is empty: give at least one JupyterServer")
    targets = [server] if server is not None else list(servers or [])
    if executor is not None and targets:
        raise ValueError("give executor or server, not both: an executor's workers start kernels")
    _check_remote_options(bool(targets), kernel_env, launch_timeout)
    runs = [prepare(item) for item in notebooks]
    from .parameters import parameter_code

    runnable = []

    def parameters_of(run: NotebookRun) -> Mapping[str, Any] | None:
        return parameters if run.parameters is None else run.parameters

    for index, run in enumerate(runs):
        if run.notebook is None:
            continue
        if parameters_of(run) is not None:
            try:  # the same check execute() makes, before any kernel starts
                parameter_code(run.notebook, parameters_of(run) or {}, kernel_name)
            except KernelwireError as exc:
                run.error = exc
                continue
        runnable.append(index)

    def folder_of(run: NotebookRun) -> str | os.PathLike[str] | None:
        return (
            cwd if cwd is not None else (Path(run.source).resolve().parent if run.source else None)
        )

    if executor is not None:
        from .notebook_executor import NotebookTask, run_on_executor

        def task_for(run: NotebookRun) -> NotebookTask:
            assert run.notebook is not None
            where = folder_of(run)
            return NotebookTask(
                dict(run.notebook),
                kernel_name,
                None if where is None else os.fspath(where),
                timeout,
                allow_errors,
                max_output_chars,
                history_file,
                parameters_of(run),
                run.source,
                skip_tag,
                startup_timeout,
                fork=fork,
            )

        run_on_executor(
            executor, runs, runnable, task_for, jobs, on_notebook_start, on_notebook_done
        )
        return runs

    spread = None
    if len(targets) > 1:
        from ._spread import ServerSpread

        spread = ServerSpread(targets, runs, runnable)
    elif targets:
        for index in runnable:
            runs[index].server = targets[0].transport.url

    def kernel_for(index: int) -> Callable[[], Kernel | RemoteKernel]:
        run = runs[index]
        assert run.notebook is not None
        name = kernel_name or kernel_name_of(run.notebook)
        if targets:

            def on_server() -> RemoteKernel:
                chosen = targets[0] if spread is None else spread.next_server(index)
                # only a folder given there: a notebook's own folder is on this machine
                return start_on_server(
                    chosen, name, cwd, env=kernel_env, launch_timeout=launch_timeout
                )

            return on_server
        where = folder_of(run)
        return lambda: start_notebook_kernel(name, where, history_file, fork, startup_timeout)

    def run_notebook(kernel: Kernel | RemoteKernel, run: NotebookRun) -> None:
        assert run.notebook is not None
        execute(
            run.notebook,
            timeout=timeout,
            allow_errors=allow_errors,
            kernel=kernel,
            own_kernel=True,
            front_end=front_end,
            max_output_chars=max_output_chars,
            on_cell_start=on_cell_start,
            on_cell_done=on_cell_done,
            on_output=on_output,
            parameters=parameters_of(run),
            input_path=run.source,
            save_to=run.save_to,
            skip_tag=skip_tag,
        )

    # Per lane, side by side: up to two kernel starts (its own and one ahead) and the
    # shutdown of its last kernel.
    with ThreadPoolExecutor(3 * jobs, thread_name_prefix="kernelwire-notebooks") as workers:
        batch = _Batch(
            runs,
            runnable,
            workers,
            kernel_for,
            run_notebook,
            ahead=jobs,  # one kernel starting ahead per lane
            on_notebook_start=on_notebook_start,
            on_notebook_done=on_notebook_done,
            run_again=None if spread is None else spread.run_again,
        )
        try:
            if jobs == 1:
                batch.lane()  # on the caller's thread, as execute() runs
            else:
                batch.lanes(jobs)
        finally:
            batch.finish()
    return runs


class _Batch:
    """One :func:`execute_many` call: which notebook runs next, and every kernel in play."""

    def __init__(
        self,
        runs: list[NotebookRun],
        runnable: list[int],
        workers: ThreadPoolExecutor,
        kernel_for: Callable[[int], Callable[[], Kernel | RemoteKernel]],
        run_notebook: Callable[[Kernel | RemoteKernel, NotebookRun], None],
        *,
        ahead: int,
        on_notebook_start: NotebookHook | None,
        on_notebook_done: NotebookHook | None,
        run_again: Callable[[int], bool] | None = None,
    ) -> None:
        self.runs = runs
        self.run_again = run_again
        self.workers = workers
        self.kernel_for = kernel_for
        self.run_notebook = run_notebook
        self.ahead = ahead
        self.on_notebook_start = on_notebook_start
        self.on_notebook_done = on_notebook_done
        self._lock = threading.Lock()
        self._queue = deque(runnable)
        self._stopped = False
        self._starting: dict[int, Future[Kernel | RemoteKernel]] = {}  # not yet taken
        self._running: dict[int, Kernel | RemoteKernel] = {}
        self._stopping: list[Future[None]] = []

    def claim(self) -> int | None:
        """The next notebook not yet begun, in order, or ``None``.

        Kernels start for it and for the ``ahead`` notebooks after it, so that a lane
        finishing a notebook finds the next one's kernel ready.
        """
        with self._lock:
            index = None if self._stopped or not self._queue else self._queue.popleft()
            if index is not None:
                for upcoming in (index, *itertools.islice(self._queue, self.ahead)):
                    if upcoming not in self._starting:
                        self._starting[upcoming] = self.workers.submit(self.kernel_for(upcoming))
            return index

    def lane(self) -> None:
        """Run notebooks one after another until none is left."""
        while (index := self.claim()) is not None:
            self.run(index)

    def lanes(self, jobs: int) -> None:
        """Run ``jobs`` lanes at once; on any exception, stop them all promptly."""
        with ThreadPoolExecutor(jobs, thread_name_prefix="kernelwire-lane") as lanes:
            futures = [lanes.submit(self.lane) for _ in range(jobs)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                self.stop()  # e.g. Ctrl-C: the running notebooks' kernels go down now
                raise

    def run(self, index: int) -> None:
        run = self.runs[index]
        if self.on_notebook_start is not None:
            self.on_notebook_start(index, run)
        try:
            # Kept in the starting map until its result is in, so that an interrupt while
            # waiting still shuts the kernel down.
            kernel = self._starting[index].result()
        except KernelwireError as exc:
            with self._lock:
                del self._starting[index]
            run.error = exc
        else:
            with self._lock:
                del self._starting[index]
                self._running[index] = kernel
                stopped = self._stopped
            try:
                if stopped:
                    return  # the batch was interrupted while this kernel started
                self.run_notebook(kernel, run)
            except KernelwireError as exc:
                run.error = exc
            finally:
                with self._lock:
                    del self._running[index]
                    self._stopping.append(self.workers.submit(kernel.shutdown))
        if self.run_again is not None and not self._stopped and self.run_again(index):
            with self._lock:
                self._queue.appendleft(index)  # next, for this lane or any other
            return
        if self.on_notebook_done is not None:
            self.on_notebook_done(index, run)

    def stop(self) -> None:
        """Begin no more notebooks; shut the running ones' kernels down now."""
        with self._lock:
            self._stopped = True
            running = list(self._running.values())
        for kernel in running:  # its lane sees the kernel die, and ends
            if isinstance(kernel, Kernel):
                kernel.shutdown(now=True)
            else:
                kernel.shutdown()

    def finish(self) -> None:
        """Shut down kernels started but never used; wait until every kernel is down."""
        with self._lock:
            self._stopped = True
            left, self._starting = list(self._starting.values()), {}
        stopping = self._stopping + [self.workers.submit(_shutdown_started, f) for f in left]
        for stopped in stopping:
            stopped.result()


def prepare(item: NotebookRun | NotebookNode | str | os.PathLike[str]) -> NotebookRun:
    """A notebook read for :func:`execute_many` (a file that cannot be read: its error).

    Read notebooks up front with it to check them before anything runs; then pass the
    runs to :func:`execute_many`, which does not read them again.
    """
    if isinstance(item, NotebookRun):
        return item
    if isinstance(item, dict):
        return NotebookRun(None, _node(item))
    try:
        return NotebookRun(os.fspath(item), read(item))
    except NotebookError as exc:
        return NotebookRun(os.fspath(item), None, exc)


def _shutdown_started(future: Future[Kernel | RemoteKernel]) -> None:
    """Shut down a kernel that was started ahead but never used."""
    try:
        kernel = future.result()
    except KernelwireError:
        return
    kernel.shutdown()
