"""Notebook batches on a ``concurrent.futures.Executor``: Dask, a process pool, Ray's, ...

:func:`kernelwire.notebook.execute_many` hands each notebook to the executor as a
picklable :class:`NotebookTask`; the worker starts a kernel of its own, runs the notebook
with :func:`~kernelwire.notebook.execute`, shuts the kernel down, and sends back a
picklable :class:`NotebookResult` (the executed notebook, the error that stopped it, the
worker it ran on, when). Workers need kernelwire and the kernels the notebooks name.

Tasks queued ahead (Dask only): when the cluster's worker threads are no more than
``jobs`` (so no more than ``jobs`` notebooks can run at once anyway), each thread also
gets the next task queued behind its running one, so that it begins the next notebook
as soon as one ends rather than after a round trip through the caller.

Stopping a batch (Ctrl-C in the caller): notebooks not yet begun are cancelled. On a
Dask executor the running ones are told through a ``distributed.Event`` of the batch,
and each shuts its kernel down at once; a task queued behind one of them on its worker
then does not begin (the worker noted the stop). Other executors cannot reach a running
task, so those notebooks finish (a process pool's workers get the terminal's Ctrl-C
themselves).

Kernels started ahead (Dask only): while a notebook runs, its worker process starts the
kernel the next notebook of the batch will need there (a guess: the same kernel and
folder), as local lanes do, so that the worker's next task finds it ready
(:class:`WarmKernels`; only a task with a notebook left for its worker thread after it
starts one, so that none is started for nobody at the batch's end). A task whose
kernel or folder differs shuts the waiting one down and starts its own. A used kernel
goes down in a thread after its task (off the task's path, as with local lanes). When
the batch ends, normally or on Ctrl-C, the caller has every worker shut down the
batch's kernels still waiting and wait for its used ones to be down
(``Client.run(drop_warm_kernels, batch)``); a worker starts no more for that batch. A
kernel nobody takes within :data:`WARM_IDLE` seconds (a caller that died) shuts itself
down. Other executors cannot reach every worker at the end, so their tasks start no
kernel ahead and shut their kernels down before they return.
"""

from __future__ import annotations

import logging
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
    from .lifecycle.kernel import Kernel
    from .notebook import NotebookHook, NotebookRun

log = logging.getLogger("kernelwire.notebook")

STOP_WAIT = 30.0
"""Seconds a stopped Dask batch waits for its running notebooks' kernels to go down."""
STOP_POLL = 2.0
"""Seconds between a worker's looks at its batch's stop event (a long poll: no busy loop)."""
WARM_IDLE = 120.0
"""Seconds a kernel started ahead on a worker waits to be taken before it shuts itself
down: the safety net for a batch whose caller never said it ended."""

WarmKey = tuple[str, "str | None", "str | None", bool, float]
"""What a kernel started ahead must match to serve a notebook: the kernel's name, its
folder, its history file, forked or not, its start-up time."""


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
    batch: str | None = None
    """The batch's id: kernels started ahead on a worker serve only their own batch."""
    ahead: bool = False
    """Start a kernel ahead, on this worker, for the batch's next notebook (Dask only:
    set while notebooks remain to be sent)."""


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
        if task.batch is not None and warm_kernels.stopped(task.batch):
            # Queued on this worker behind a notebook that the batch's stop shut down:
            # it never begins (no kernel taken or started).
            raise ExecutorError(
                f"{task.source or 'a notebook'}: the batch was stopped before it began"
            )
        name = task.kernel_name or kernel_name_of(nb)
        key: WarmKey = (name, task.cwd, task.history_file, task.fork, task.startup_timeout)
        kernel = None if task.batch is None else warm_kernels.take(task.batch, key)
        if kernel is None:
            try:
                kernel = start_notebook_kernel(*key)
            except NoSuchKernel as exc:
                raise NoSuchKernel(name, exc.available, where=f"on worker {where}") from None
        if task.ahead and task.batch is not None:
            # The next notebook's kernel starts while this one runs (a guess: the same
            # kernel and folder, as in most batches).
            warm_kernels.start_ahead(task.batch, key, start_notebook_kernel)
        if task.stop_event is not None:
            _watch_stop(task.stop_event, _stopper(task.batch, kernel), done)
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
            # Asked to shut down, as local lanes and nbclient do: the notebook's code gets
            # its exit (atexit handlers, files flushed); a signal would cut it off.
            if task.batch is None:
                kernel.shutdown()
            else:  # off the task's path, as local lanes do; waited for at the batch's end
                warm_kernels.retire(task.batch, kernel)
    except NoSuchKernel as exc:
        error = exc
    except KernelwireError as exc:
        error = exc
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{exc.args[0]} (on worker {where})", *exc.args[1:])
    finally:
        done.set()
    return NotebookResult(dict(nb), error, where, started, time.time())


@dataclass(eq=False)  # found by identity
class _Ahead:
    """A kernel starting or started ahead, and what it was started for."""

    key: WarmKey
    kernel: Future[Kernel] = field(default_factory=Future)
    expiry: threading.Timer | None = None


class WarmKernels:
    """A worker process's kernels started ahead, by batch, each waiting for the batch's
    next notebook on this worker (see the module's docstring)."""

    def __init__(self, idle: float = WARM_IDLE) -> None:
        self.idle = idle
        self._lock = threading.Lock()
        self._waiting: dict[str, list[_Ahead]] = {}
        self._stopping: dict[str, list[threading.Thread]] = {}  # used kernels going down
        # Batches over: nothing more is started for them (a few bytes a batch).
        self._ended: set[str] = set()
        self._stopped: set[str] = set()  # of those, the ones stopped (Ctrl-C)

    def take(self, batch: str, key: WarmKey) -> Kernel | None:
        """A kernel started ahead for ``batch`` that matches ``key`` (waiting for its
        start to end if need be), or ``None``; one that does not match is shut down."""
        with self._lock:
            waiting = self._waiting.get(batch)
            ahead = waiting.pop(0) if waiting else None
            if ahead is not None and ahead.expiry is not None:
                ahead.expiry.cancel()
        if ahead is None:
            return None
        if ahead.key != key:
            threading.Thread(target=_shut_down_when_started, args=(ahead,), daemon=True).start()
            return None
        try:
            return ahead.kernel.result()
        except Exception as exc:  # the task starts its own, whose error says why
            log.debug("a kernel started ahead for batch %s failed: %s", batch, exc)
            return None

    def start_ahead(self, batch: str, key: WarmKey, start: Callable[..., Kernel]) -> bool:
        """Start ``start(*key)`` in a thread, for ``batch``'s next notebook here;
        False if the batch is over."""
        ahead = _Ahead(key)
        with self._lock:
            if batch in self._ended:
                return False
            self._waiting.setdefault(batch, []).append(ahead)

        def run() -> None:
            try:
                kernel = start(*key)
            except BaseException as exc:  # for the taker, which then starts its own
                ahead.kernel.set_exception(exc)
                return
            with self._lock:
                if ahead in self._waiting.get(batch, []):
                    ahead.expiry = threading.Timer(self.idle, self._expire, args=(batch, ahead))
                    ahead.expiry.daemon = True
                    ahead.expiry.start()
            ahead.kernel.set_result(kernel)

        threading.Thread(target=run, name="kernelwire-warm-kernel", daemon=True).start()
        return True

    def _expire(self, batch: str, ahead: _Ahead) -> None:
        """Shut a kernel down that nobody took within :attr:`idle` seconds."""
        with self._lock:
            waiting = self._waiting.get(batch, [])
            if ahead not in waiting:
                return
            waiting.remove(ahead)
        log.warning("a kernel started ahead for batch %s was not taken: shut down", batch)
        _shut_down_when_started(ahead)

    def retire(self, batch: str, kernel: Kernel) -> None:
        """Shut down a kernel a notebook of ``batch`` is done with, in a thread (the
        task returns meanwhile); :meth:`drop` waits for it."""
        stopper = threading.Thread(target=kernel.shutdown, name="kernelwire-retire", daemon=True)
        with self._lock:
            ended = batch in self._ended
            if not ended:
                stopping = self._stopping.setdefault(batch, [])
                stopping[:] = [thread for thread in stopping if thread.is_alive()]
                stopping.append(stopper)
        if ended:  # nobody would wait for it any more
            kernel.shutdown()
        else:
            stopper.start()

    def stop(self, batch: str) -> None:
        """The batch was stopped (its stop event seen here): start no more kernels for
        it, and have its tasks not yet begun here not begin (:meth:`stopped`)."""
        with self._lock:
            self._ended.add(batch)
            self._stopped.add(batch)

    def stopped(self, batch: str) -> bool:
        """Whether a task of ``batch`` here saw the batch's stop event."""
        with self._lock:
            return batch in self._stopped

    def drop(self, batch: str) -> int:
        """The batch is over: shut its kernels started ahead down (waiting for those
        still starting), wait for its used ones to be down, and start no more for it;
        how many kernels started ahead were not used."""
        with self._lock:
            self._ended.add(batch)
            entries = self._waiting.pop(batch, [])
            for ahead in entries:
                if ahead.expiry is not None:
                    ahead.expiry.cancel()
            stopping = self._stopping.pop(batch, [])
        for ahead in entries:
            _shut_down_when_started(ahead)
        for thread in stopping:
            thread.join()  # a shutdown is bounded: the kernel's exit is waited for 5 s at most
        return len(entries)


def _shut_down_when_started(ahead: _Ahead) -> None:
    try:
        kernel = ahead.kernel.result()
    except Exception:  # it never started: nothing to shut down
        return
    kernel.shutdown(now=True)


warm_kernels = WarmKernels()
"""This process's kernels started ahead (on a Dask worker: the worker's)."""


def drop_warm_kernels(batch: str) -> int:
    """Run on every worker when a batch ends: shut down its kernels started ahead."""
    return warm_kernels.drop(batch)


def _dask_client(executor: Executor) -> Any:
    """The Dask client behind ``executor`` (``client.get_executor()``), else ``None``."""
    if not type(executor).__module__.startswith("distributed"):
        return None
    # distributed's ClientExecutor keeps its client there; nothing public names it.
    return getattr(executor, "_client", None)


def _dask_threads(client: Any) -> int:
    """How many tasks the Dask cluster of ``client`` runs at once (its workers'
    threads, counted now), else 0 (no Dask client, or the scheduler did not say)."""
    if client is None:
        return 0
    try:
        return sum(client.nthreads().values())
    except Exception:  # the scheduler did not answer: no task is queued ahead
        log.debug("could not count the Dask workers' threads", exc_info=True)
        return 0


def _drop_warm_everywhere(client: Any, batch: str) -> None:
    """Have every worker shut down the batch's kernels started ahead."""
    try:
        dropped = client.run(drop_warm_kernels, batch)
    except Exception:  # a worker or the scheduler gone: its kernels went with it
        log.warning("could not reach every Dask worker to shut down kernels started ahead")
        return
    log.debug("kernels started ahead and not used, by worker: %s", dropped)


def _stopper(batch: str | None, kernel: Kernel) -> Callable[[], None]:
    """What a task's stop watcher calls: note on this worker that the batch was stopped
    (the tasks queued here behind this one then do not begin, with no round trip to
    the scheduler to ask), then shut the task's kernel down now."""

    def stop() -> None:
        if batch is not None:
            warm_kernels.stop(batch)
        kernel.shutdown(now=True)

    return stop


def _watch_stop(name: str, stop: Callable[[], object], done: threading.Event) -> None:
    """Call ``stop()`` when the batch's event is set, unless ``done`` is set first."""
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
                        stop()
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
    client = _dask_client(executor)
    batch = uuid.uuid4().hex
    queue = list(reversed(runnable))
    running: dict[Future[NotebookResult], int] = {}
    threads = _dask_threads(client)
    # Notebooks running at once: ``jobs``, or fewer on a smaller cluster.
    slots = min(jobs, threads) if threads else jobs
    # When the cluster cannot run more than ``jobs`` at once anyway, each worker thread
    # also gets the next task queued behind its running one, so that it does not sit
    # idle for a round trip (result to here, next task to it) between notebooks.
    in_flight = jobs + threads if 0 < threads <= jobs else jobs

    def submit_more() -> None:
        while queue and len(running) < in_flight:
            index = queue.pop()
            task = make_task(runs[index])
            if stop_event is not None:
                task.stop_event = stop_event.name
            if client is not None:
                task.batch = batch
                # The notebook after this one on the same worker thread is ``slots``
                # notebooks later in the batch: a kernel ahead only if there is one.
                task.ahead = len(queue) >= slots
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
        if client is not None:
            _drop_warm_everywhere(client, batch)
