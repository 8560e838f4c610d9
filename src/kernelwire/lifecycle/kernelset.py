"""Many kernels by id: :class:`KernelSet` (and :class:`AsyncKernelSet`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from .._threads import in_thread
from ..errors import KernelwireError
from .kernel import Kernel, start_kernel


class KernelSet:
    """Kernels started and kept by id; closing the set shuts every one down.

    >>> with KernelSet() as kernels:             # doctest: +SKIP
    ...     kid = kernels.start("python3")
    ...     kernels[kid].client().execute_interactive("1")
    """

    def __init__(self) -> None:
        self._kernels: dict[str, Kernel] = {}
        self._lock = threading.Lock()

    def start(self, name: str = "python3", **options: Any) -> str:
        """Start a kernel of spec ``name``; returns its id."""
        kernel = start_kernel(name, **options)
        with self._lock:
            self._kernels[kernel.kernel_id] = kernel
        return kernel.kernel_id

    def __getitem__(self, kernel_id: str) -> Kernel:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise KernelwireError(f"no kernel with id {kernel_id!r} in this set") from None

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self._kernels

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._kernels))

    def __len__(self) -> int:
        return len(self._kernels)

    def ids(self) -> list[str]:
        """The ids of the kernels in the set."""
        return list(self._kernels)

    def interrupt(self, kernel_id: str) -> None:
        """Interrupt one kernel."""
        self[kernel_id].interrupt()

    def restart(self, kernel_id: str, now: bool = False) -> None:
        """Restart one kernel."""
        self[kernel_id].restart(now)

    def shutdown(self, kernel_id: str, now: bool = False) -> None:
        """Shut one kernel down and forget it."""
        kernel = self[kernel_id]
        with self._lock:
            self._kernels.pop(kernel_id, None)
        kernel.shutdown(now)

    def shutdown_all(self, now: bool = False) -> None:
        """Shut every kernel down (in parallel threads)."""
        with self._lock:
            kernels, self._kernels = list(self._kernels.values()), {}
        threads = [threading.Thread(target=k.shutdown, args=(now,)) for k in kernels]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def __enter__(self) -> KernelSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown_all()


class AsyncKernelSet:
    """:class:`KernelSet` for asyncio: process operations run in worker threads."""

    def __init__(self) -> None:
        self.kernels = KernelSet()

    async def start(self, name: str = "python3", **options: Any) -> str:
        """Start a kernel; returns its id."""
        return await in_thread(self.kernels.start, name, **options)

    def __getitem__(self, kernel_id: str) -> Kernel:
        return self.kernels[kernel_id]

    def ids(self) -> list[str]:
        """The ids of the kernels in the set."""
        return self.kernels.ids()

    async def interrupt(self, kernel_id: str) -> None:
        """Interrupt one kernel."""
        await in_thread(self.kernels.interrupt, kernel_id)

    async def restart(self, kernel_id: str, now: bool = False) -> None:
        """Restart one kernel."""
        await in_thread(self.kernels.restart, kernel_id, now)

    async def shutdown(self, kernel_id: str, now: bool = False) -> None:
        """Shut one kernel down."""
        await in_thread(self.kernels.shutdown, kernel_id, now)

    async def shutdown_all(self, now: bool = False) -> None:
        """Shut every kernel down."""
        await in_thread(self.kernels.shutdown_all, now)

    async def __aenter__(self) -> AsyncKernelSet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown_all()
