"""Execute notebooks: every code cell in order, outputs kept as nbclient keeps them.

>>> nb = kernelwire.notebook.execute("analysis.ipynb", timeout=600)   # doctest: +SKIP
>>> nbformat.write(nb, "analysis.out.ipynb")                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import nbformat
from nbformat import NotebookNode

from .errors import ExecutionError, KernelTimeout, KernelwireError
from .execution import INTERRUPT_GRACE, OutputCollector
from .lifecycle.kernel import Kernel, start_kernel
from .lifecycle.pool import KernelPool
from .protocol import requests
from .protocol.jsonutil import format_date
from .remote import JupyterServer, RemoteKernel

CellHook = Callable[[int, NotebookNode], None]


class NotebookError(KernelwireError, ValueError):
    """A notebook that cannot be read or is not a valid notebook; names the file."""


class CellExecutionError(ExecutionError):
    """A cell raised: carries the cell's index and the kernel's ename, evalue, traceback."""

    def __init__(
        self, cell_index: int, ename: str, evalue: str, traceback: Sequence[str] = ()
    ) -> None:
        super().__init__(ename, evalue, traceback)
        self.cell_index = cell_index
        self.args = (f"cell {cell_index} raised {ename}: {evalue}",)


def read(path: str | os.PathLike[str]) -> NotebookNode:
    """Read and validate a notebook; :class:`NotebookError` says what is wrong with it."""
    try:
        nb: NotebookNode = nbformat.read(os.fspath(path), as_version=4)  # type: ignore[no-untyped-call]
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotebookError(f"{path}: not a readable notebook: {exc}") from None
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(f"{path}: not a valid notebook: {exc.message}") from None
    return nb


def kernel_name_of(nb: NotebookNode, default: str = "python3") -> str:
    """The kernel named in the notebook's metadata (``default`` when it names none)."""
    spec = nb.get("metadata", {}).get("kernelspec", {})
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else default


def execute(
    nb_or_path: NotebookNode | str | os.PathLike[str],
    kernel_name: str | None = None,
    timeout: float | None = None,
    allow_errors: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    *,
    pool: KernelPool | None = None,
    server: JupyterServer | None = None,
    front_end: bool = False,
    on_cell_start: CellHook | None = None,
    on_cell_done: CellHook | None = None,
) -> NotebookNode:
    """Run every code cell of a notebook in order and return it with its outputs.

    The kernel is the notebook's (``metadata.kernelspec.name``) unless ``kernel_name``
    is given; ``pool`` lends a ready kernel instead of starting one (it is given back,
    restarted); ``server`` runs it on a Jupyter Server or Gateway instead. Cells tagged
    ``skip-execution`` are skipped; an error in a cell stops the run with
    :class:`CellExecutionError` (naming the cell) unless ``allow_errors`` or the cell is
    tagged ``raises-exception``. ``timeout`` applies per cell: the kernel is interrupted
    and :class:`KernelTimeout` raised. Outputs are kept as nbclient keeps them;
    ``front_end=True`` merges streams and applies ``\\r``/``\\b`` as JupyterLab does.
    Each executed cell gets nbclient's ``metadata.execution`` timestamps.
    """
    nb = nb_or_path if isinstance(nb_or_path, NotebookNode) else read(nb_or_path)
    name = kernel_name or kernel_name_of(nb)
    with ExitStack() as stack:
        kernel: Kernel | RemoteKernel
        if server is not None:
            kernel = stack.enter_context(server.start_kernel(name))
        elif pool is not None:
            kernel = pool.acquire()
            stack.callback(pool.release, kernel)
        else:
            kernel = stack.enter_context(start_kernel(name, cwd=os.fspath(cwd) if cwd else None))
        client = kernel.client()
        stack.callback(client.stop_channels)
        info = client.kernel_info(reply=True, timeout=60)["content"].get("language_info")
        if info:
            nb.metadata["language_info"] = info
        displays: dict[str, list[NotebookNode]] = {}
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            tags = cell.get("metadata", {}).get("tags", [])
            if "skip-execution" in tags:
                continue
            if on_cell_start is not None:
                on_cell_start(index, cell)
            collector = OutputCollector(front_end=front_end, displays=displays)
            _run_cell(kernel, client, index, cell, timeout, collector)
            if on_cell_done is not None:
                on_cell_done(index, cell)
            error = next((o for o in cell.outputs if o.output_type == "error"), None)
            if error is not None and not allow_errors and "raises-exception" not in tags:
                raise CellExecutionError(index, error.ename, error.evalue, error.traceback)
    return nb


def _run_cell(
    kernel: Kernel | RemoteKernel,
    client: Any,
    index: int,
    cell: NotebookNode,
    timeout: float | None,
    collector: OutputCollector,
) -> None:
    cell.outputs = []
    cell.execution_count = None
    timing = cell.setdefault("metadata", {}).setdefault("execution", {})
    pending = client.submit(requests.execute(cell.source, allow_stdin=False))
    try:
        try:
            for channel, msg in pending.events(timeout):
                _consume(collector, timing, channel, msg)
        except KernelTimeout:
            kernel.interrupt()
            for channel, msg in pending.events(INTERRUPT_GRACE):
                _consume(collector, timing, channel, msg)
            cell.outputs = collector.outputs
            raise KernelTimeout(
                f"cell {index} did not finish within {timeout:g} s: interrupted"
            ) from None
    finally:
        pending.close()
    reply = pending.reply(0)
    cell.outputs = collector.outputs
    cell.execution_count = reply["content"].get("execution_count", collector.execution_count)


def timestamp(msg: Any) -> str:
    """A message's header date as nbclient records it (ISO 8601, UTC)."""
    date = msg["header"].get("date")
    return format_date(date) if isinstance(date, datetime) else str(date)


def _consume(collector: OutputCollector, timing: dict[str, str], channel: str, msg: Any) -> None:
    msg_type = msg["msg_type"]
    if channel == "iopub":
        if msg_type == "status":
            state = msg["content"].get("execution_state")
            if state in ("busy", "idle"):
                timing[f"iopub.status.{state}"] = timestamp(msg)
        elif msg_type == "execute_input":
            timing["iopub.execute_input"] = timestamp(msg)
        collector.feed(msg)
    elif channel == "shell":
        started = msg.get("metadata", {}).get("started")
        if started:
            timing["shell.execute_reply.started"] = started
        timing["shell.execute_reply"] = timestamp(msg)
