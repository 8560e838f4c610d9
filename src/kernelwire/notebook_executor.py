"""Notebook batches on a ``concurrent.futures.Executor``: Dask, a process pool, Ray's, ...

:func:`kernelwire.notebook.execute_many` hands each notebook to the executor as a
picklable :class:`NotebookTask`; the worker starts a kernel of its own, runs the notebook
with :func:`~kernelwire.notebook.execute`, shuts the kernel down, and sends back a
picklable :class:`NotebookResult` (the executed notebook, the error that stopped it, the
worker it ran on, when). Workers need kernelwire and the kernels the notebooks name.

Stopping a batch (Ctrl-C in the caller): notebooks not yet begun are cancelled. On a
Dask executor the running ones are told through a ``distributed.Event`` of the batch,
and each shuts its kernel down at once; other executors cannot reach a running task, so
those notebooks finish (a process pool's workers get the terminal's Ctrl-C themselves).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ExecutorError, KernelwireError, NoSuchKernel

if TYPE_CHECKING:
    from .notebook import NotebookHook, NotebookRun

STOP_WAIT = 30.0
"""Seconds a stopped Dask batch waits for its running notebooks' kernels to go down."""
STOP_POLL = 2.0
"""Seconds between a worker's looks at its batch's stop event (a long poll: no busy loop)."""


@dataclass
class NotebookTask:
    """One notebook's run as it travels to a worker (everything in it pickles)."""

    notebook: dict[str, Any]
    kernel_name: str | None
    cwd: str | None
    timeout: float | None
    allow_errors: bool
    max_output_chars: int | None
    history_file: str | None
    parameters: Mapping[str, Any] | None
    source: str | None
    skip_tag: str
    """Cells with this tag are not run."""
    startup_timeout: float
    """Seconds the worker's kernel gets to start."""
    fork: bool = False
    """Fork the worker's kernels from a warm template (see :class:`~kernelwire.ForkServer`)."""
    stop_event: str | None = None
    """The name of the batch's ``distributed.Event`` (Dask only): set, the run stops."""


@dataclass
class NotebookResult:
    """What a worker sends back for one notebook."""

    notebook: dict[str, Any]
    error: KernelwireError | None
    worker: str
    started: float
    finished: float = field(default=0.0)


def worker_name() -> str:
    """How results and errors name the worker: its Dask address, else host and pid."""
    try:
        from distributed import get_worker

        return f"{get_worker().address} (pid {os.getpid()})"
    except (ImportError, ValueError):
        return f"{socket.gethostname()} (pid {os.getpid()})"


def run_notebook_task(task: NotebookTask) -> NotebookResult:
    """Run one notebook on a kernel of this worker's own; never raises a kernelwire error
    (it comes back in the result, its message naming the worker)."""
    from .notebook import _node, execute, kernel_name_of, start_notebook_kernel

    where = worker_name()
    started = time.time()
    nb = _node(task.notebook)
    error: KernelwireError | None = None
    done = threading.Event()
    try:
        name = task.kernel_name or kernel_name_of(nb)
        try:
            kernel = start_notebook_kernel(
                name, task.cwd, task.history_file, task.fork, task.startup_timeout
            )
        except NoSuchKernel as exc:
            raise NoSuchKernel(name, exc.available, where=f"on worker {where}") from None
        if task.stop_event is not None:
            _watch_stop(task.stop_event, kernel.shutdown, done)
        try:
            execute(
                nb,
                timeout=task.timeout,
                allow_errors=task.allow_errors,
                kernel=kernel,
                own_kernel=True,
                max_output_chars=task.max_output_chars,
                parameters=task.parameters,
                input_path=task.source,
                skip_tag=task.skip_tag,
            )
        finally:
            kernel.shutdown(now=True)
    except NoSuchKernel as exc:
        error = exc
    except KernelwireError as exc:
        error = exc
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{exc.args[0]} (on worker {where})", *exc.args[1:])
    finally:
        done.set()
    return NotebookResult(dict(nb), error, where, started, time.time())


def _watch_stop(name: str, stop: Callable[..., object], done: threading.Event) -> None:
    """Shut the kernel down (``stop(now=True)``) when the batch's event is set."""
    import distributed

    # The worker's client, taken on the task's thread: an Event made or used on another
    # thread without it is "not properly initialized".
    client = distributed.get_client()

    def watch() -> None:
        event = dask_event(name, client)
        while not done.is_set():
            try:
                if event.wait(STOP_POLL):
                    if not done.is_set():
                        stop(now=True)
                    return
            except Exception:  # the scheduler went away: nobody can stop us any more
                return

    threading.Thread(target=watch, name="kernelwire-stop-watch", daemon=True).start()


def _dask_stop_event(executor: Executor) -> Any:
    """A fresh ``distributed.Event`` for a batch on a Dask executor, else ``None``."""
    if not type(executor).__module__.startswith("distributed"):
        return None
    return dask_event(f"kernelwire-stop-{uuid.uuid4().hex}")


def dask_event(name: str, client: Any = None) -> Any:
    """The ``distributed.Event`` called ``name``, on ``client`` (default: the current one)."""
    import distributed

    event_class: Any = distributed.Event  # distributed is not typed
    return event_class(name, client=client)


def run_on_executor(
    executor: Executor,
    runs: list[NotebookRun],
    runnable: list[int],
    make_task: Callable[[NotebookRun], NotebookTask],
    jobs: int,
    on_notebook_start: NotebookHook | None,
    on_notebook_done: NotebookHook | None,
) -> None:
    """Run ``runs[i]`` for each ``i`` of ``runnable`` on ``executor``, ``jobs`` at a time;
    fill in each run's notebook, error and worker as its result comes back. A task the
    executor could not run (a worker lost, say) fails its notebook with
    :class:`ExecutorError`, not the batch."""
    from .notebook import _node

    stop_event = _dask_stop_event(executor)
    queue = list(reversed(runnable))
    running: dict[Future[NotebookResult], int] = {}

    def submit_more() -> None:
        while queue and len(running) < jobs:
            index = queue.pop()
            task = make_task(runs[index])
            if stop_event is not None:
                task.stop_event = stop_event.name
            if on_notebook_start is not None:
                on_notebook_start(index, runs[index])
            running[executor.submit(run_notebook_task, task)] = index

    try:
        submit_more()
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                run = runs[index]
                try:
                    result = future.result()
                except Exception as exc:  # the executor's failure, whatever its type
                    run.error = ExecutorError(
                        f"{run.source or f'notebook {index}'}: the executor could not run "
                        f"it: {type(exc).__name__}: {exc}"
                    )
                else:
                    run.notebook = _node(result.notebook)
                    run.error = result.error
                    run.worker = result.worker
                if on_notebook_done is not None:
                    on_notebook_done(index, run)
            submit_more()
    except BaseException:
        queue.clear()
        if stop_event is not None:
            # Told first, then waited for: a Dask future cancelled while it runs is done
            # at once for us, while its task (and kernel) would go on on the worker.
            stop_event.set()
            wait(list(running), timeout=STOP_WAIT)
        for future in running:
            future.cancel()
        raise
    finally:
        if stop_event is not None:
            # Set, the watchers of finished runs return now rather than at their next
            # poll (a wait still open when the cluster closes is logged as an error).
            stop_event.set()
            stop_event.clear()
