"""asyncio faces of the lifecycle: :func:`start_kernel_async` and :class:`AsyncKernel`.

Starting, restarting and stopping a kernel are process operations (spawn, wait,
signal); they run in a worker thread so the event loop keeps turning. Talking to the
kernel goes through :class:`~kernelwire.AsyncKernelClient`, on the loop itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import execution
from .._threads import in_thread
from ..client.async_client import AsyncKernelClient
from ..execution import ExecutionResult, StdinHandler
from ..outputs import OutputNode
from .kernel import SHUTDOWN_TIMEOUT, Kernel, start_kernel


class AsyncKernel:
    """A started kernel, for asyncio code. ``async with`` shuts it down on exit."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._run_client: AsyncKernelClient | None = None

    @property
    def kernel_id(self) -> str:
        """The kernel's id."""
        return self.kernel.kernel_id

    @property
    def pid(self) -> int:
        """The kernel's process id."""
        return self.kernel.pid

    @property
    def connection_file(self) -> str | None:
        """The kernel's connection file."""
        return self.kernel.connection_file

    def is_alive(self) -> bool:
        """Whether the kernel process is running."""
        return self.kernel.is_alive()

    def async_client(self, **kwargs: Any) -> AsyncKernelClient:
        """A started :class:`AsyncKernelClient` whose waits raise ``KernelDied`` on death."""
        return self.kernel.async_client(**kwargs)

    def _runner(self) -> AsyncKernelClient:
        client = self._run_client
        if client is None or not client.channels_running:
            client = self._run_client = self.kernel.async_client()
        return client

    async def run(
        self,
        code: str,
        *,
        timeout: float | None = None,
        stdin: StdinHandler | None = None,
        front_end: bool = True,
        max_output_chars: int | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return what a notebook would show (see :meth:`Kernel.run`)."""
        client = self._runner()
        await client.wait_for_ready(self.kernel.startup_timeout)
        return await execution.run_async(
            client,
            code,
            timeout=timeout,
            stdin=stdin,
            interrupt=self.interrupt,
            front_end=front_end,
            max_output_chars=max_output_chars,
        )

    async def stream(
        self, code: str, *, timeout: float | None = None, stdin: StdinHandler | None = None
    ) -> AsyncIterator[OutputNode]:
        """Run ``code`` and yield its outputs as they arrive."""
        client = self._runner()
        await client.wait_for_ready(self.kernel.startup_timeout)
        async for output in execution.stream_async(
            client, code, timeout=timeout, stdin=stdin, interrupt=self.interrupt
        ):
            yield output

    async def interrupt(self) -> None:
        """Interrupt the running code (signal or message, as the spec says)."""
        await in_thread(self.kernel.interrupt)

    async def restart(self, now: bool = False, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Restart on the same connection info."""
        await in_thread(self.kernel.restart, now, timeout)

    async def shutdown(self, now: bool = False, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Shut down (request, SIGTERM, SIGKILL) and remove the connection file."""
        await in_thread(self.kernel.shutdown, now, timeout)

    async def __aenter__(self) -> AsyncKernel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"<AsyncKernel {self.kernel!r}>"


async def start_kernel_async(name: str = "python3", **options: Any) -> AsyncKernel:
    """Start the kernel called ``name`` without blocking the loop; see :func:`start_kernel`."""
    return AsyncKernel(await in_thread(start_kernel, name, **options))
