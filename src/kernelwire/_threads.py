"""Blocking work awaited from asyncio, on a thread of its own.

``asyncio.to_thread`` runs work on the event loop's default executor. A loop that
outlives a ``fork()`` (jupyter_core's ``run_sync`` keeps one per thread, and nbclient
runs through it; ``ProcessPoolExecutor`` forks on Linux) takes that executor into the
child without its threads: the executor believes an idle worker exists, queues the work
for it, and the child waits for ever (nbclient's ``test_many_parallel_notebooks`` hung
so with kernelwire's managers). A thread started per call has nothing to inherit. The
calls here are kernel starts, restarts and shutdowns (a fraction of a second each), so
the cost of a new thread (some tens of microseconds) does not show.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled: nobody wants the outcome
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` on a new thread and await its result (or its
    exception), with the caller's context variables, as ``asyncio.to_thread`` does.

    Cancelling the await does not stop ``func``: the thread runs to its end and its
    outcome is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:  # handed to the awaiting task, which raises it
            error = exc
        # A loop closed meanwhile raises RuntimeError: nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)

    name = f"kernelwire-{getattr(func, '__name__', 'work')}"
    threading.Thread(target=work, name=name).start()
    return await future
