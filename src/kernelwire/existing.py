"""A kernel someone else started, known by its connection file: run code on it, interrupt
it, never stop it (``kernelwire run --existing``, ``console --existing``, ``mcp --existing``)."""

from __future__ import annotations

import os
from pathlib import Path

from .client.blocking import BlockingKernelClient
from .execution import RunsCode

READY_TIMEOUT = 30.0
"""Seconds the kernel gets to answer ``kernel_info`` when we connect."""


class ExistingKernel(RunsCode):
    """A running kernel we connect to but do not own: it is interrupted with an
    ``interrupt_request`` (the only way without its process), and :meth:`close` only
    disconnects; it keeps running for whoever started it."""

    def __init__(self, connection_file: str | os.PathLike[str]) -> None:
        self.connection_file = os.fspath(connection_file)
        self.kernel_id = Path(self.connection_file).stem.removeprefix("kernel-")
        """The connection file's name (``kernel-ID.json`` gives ``ID``)."""
        self._client = BlockingKernelClient(self.connection_file)
        self._client.start_channels(stdin=False)
        try:
            self._client.wait_for_ready(READY_TIMEOUT)
        except BaseException:
            self._client.stop_channels()
            raise

    def client(self) -> BlockingKernelClient:
        """The client connected to it."""
        return self._client

    def _runner(self) -> BlockingKernelClient:
        return self._client

    def is_alive(self) -> bool:
        """Whether it answers its heartbeat."""
        return self._client.is_alive()

    def interrupt(self) -> None:
        """Ask the kernel to interrupt its code (ipykernel answers on control)."""
        self._client.interrupt(reply=True, timeout=5)

    def close(self) -> None:
        """Disconnect; the kernel keeps running."""
        self._client.stop_channels()

    def __repr__(self) -> str:
        return f"<ExistingKernel {self.connection_file}>"
