"""A pool of pre-started kernels: ready in milliseconds, never shared, never leaked."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import KernelTimeout, KernelwireError
from .kernel import Kernel, start_kernel

CLOSE_TIMEOUT = 120.0
"""Seconds :meth:`KernelPool.close` waits for kernels still starting or stopping."""

log = logging.getLogger("kernelwire.pool")


class KernelPool:
    """Keeps ``size`` kernels of spec ``name`` started and ready.

    :meth:`acquire` hands out a ready kernel (refilling in the background);
    :meth:`release` restarts it for reuse (or shuts it down with ``restart=False``).
    A kernel is held by one holder at a time. :meth:`close` shuts every kernel down.

    >>> with KernelPool("python3", size=2) as pool:      # doctest: +SKIP
    ...     kernel = pool.acquire()
    ...     kernel.client().execute_interactive("1 + 1")
    ...     pool.release(kernel)
    """

    def __init__(self, name: str = "python3", size: int = 2, **kernel_options: Any) -> None:
        if size < 1:
            raise ValueError("a kernel pool needs size >= 1")
        self.name = name
        self.size = size
        self.kernel_options = kernel_options
        self._ready: deque[Kernel] = deque()
        self._in_use: dict[str, Kernel] = {}
        self._starting = 0
        self._errors: deque[BaseException] = deque(maxlen=5)
        self._closed = False
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._fill()

    def _fill(self) -> None:
        """Start kernels in the background until ready + starting reaches ``size``."""
        with self._cond:
            while not self._closed and len(self._ready) + self._starting < self.size:
                self._starting += 1
                self._in_background(self._start_one)

    def _in_background(self, target: Callable[..., None], *args: Any) -> None:
        """Run ``target(*args)`` on a worker thread that :meth:`close` waits for."""
        worker = threading.Thread(target=target, args=args, name="kernelwire-pool", daemon=True)
        with self._cond:
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _start_one(self, kernel: Kernel | None = None) -> None:
        try:
            if kernel is None:
                kernel = start_kernel(self.name, **self.kernel_options)
            else:
                kernel.restart()
        except BaseException as exc:
            log.warning("pool could not start a %s kernel: %s", self.name, exc)
            with self._cond:
                self._starting -= 1
                self._errors.append(exc)
                self._cond.notify_all()
            if kernel is not None:
                kernel.shutdown(now=True)
            return
        with self._cond:
            self._starting -= 1
            if self._closed or len(self._ready) >= self.size:
                keep = False
            else:
                self._ready.append(kernel)
                keep = True
            self._cond.notify_all()
        if not keep:
            kernel.shutdown(now=True)

    def acquire(self, timeout: float | None = 120.0) -> Kernel:
        """A ready kernel for this holder alone; waits for one if none is ready."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise KernelwireError("the kernel pool is closed")
                while self._ready:
                    kernel = self._ready.popleft()
                    if kernel.is_alive():
                        self._in_use[kernel.kernel_id] = kernel
                        break
                    kernel.shutdown(now=True)
                else:
                    kernel = None
                if kernel is not None:
                    break
                if self._errors and self._starting == 0:
                    raise KernelwireError(
                        f"the pool cannot start {self.name!r} kernels: {self._errors[-1]}"
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise KernelTimeout(f"no {self.name} kernel became ready within {timeout:g} s")
                if len(self._ready) + self._starting < self.size:
                    self._cond.release()
                    try:
                        self._fill()
                    finally:
                        self._cond.acquire()
                self._cond.wait(remaining)
        self._fill()
        return kernel

    def release(self, kernel: Kernel, restart: bool = True) -> None:
        """Give a kernel back: restarted for reuse (in the background), or shut down."""
        with self._cond:
            if kernel.kernel_id not in self._in_use:
                raise KernelwireError(f"kernel {kernel.kernel_id} is not held from this pool")
            del self._in_use[kernel.kernel_id]
            reuse = restart and not self._closed and len(self._ready) + self._starting < self.size
            if reuse:
                self._starting += 1
        if reuse:
            self._in_background(self._start_one, kernel)
        else:
            self._in_background(kernel.shutdown)  # the holder does not wait for it
            self._fill()

    @property
    def ready_count(self) -> int:
        """How many kernels are ready to hand out now."""
        return len(self._ready)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the pool is full (useful before timing, or at start-up)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < self.size:
                if self._errors and self._starting == 0:
                    raise KernelwireError(
                        f"the pool cannot start {self.name!r} kernels: {self._errors[-1]}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KernelTimeout(f"pool not full within {timeout:g} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        """Shut down every kernel of the pool, ready or held, and stop refilling."""
        with self._cond:
            self._closed = True
            ready, self._ready = list(self._ready), deque()
            held, self._in_use = list(self._in_use.values()), {}
            self._cond.notify_all()
        give_up = time.monotonic() + CLOSE_TIMEOUT
        while True:  # a release racing with close may add a worker meanwhile
            with self._cond:
                workers = [w for w in self._workers if w.is_alive()]
            left = give_up - time.monotonic()
            if not workers or left <= 0:
                break
            for worker in workers:
                worker.join(max(left, 0.0))
        if workers:
            log.warning("pool closed with %d kernels still starting or stopping", len(workers))
        for kernel in ready + held:
            kernel.shutdown(now=True)

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
