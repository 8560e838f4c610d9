"""Stopping a run early (a timeout, Ctrl-C, SIGTERM) in bounded time.

A busy kernel cannot act on ``shutdown_request`` until its code ends, so a plain
shutdown of one waits out the whole shutdown timeout before the kernel is killed. A run
stopped early interrupts the kernel first, gives the code :data:`STOP_GRACE` seconds to
end (keeping what it prints meanwhile), and stops a kernel of its own at once if it
did not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .errors import KernelwireError
from .lifecycle.kernel import Kernel

if TYPE_CHECKING:
    from .remote import RemoteKernel  # httpx: imported only where a server is used

STOP_GRACE = 3.0
"""Seconds code gets to end after an interrupt (its timeout, Ctrl-C, SIGTERM) before a
kernel of the run's own is stopped (SIGTERM, then SIGKILL 1 s later). Code that ignores
interrupts so costs at most about 4 s past its timeout, or after Ctrl-C."""


class Interruptible(Protocol):
    """What :func:`settle` needs of a kernel handle."""

    def interrupt(self) -> None:
        """Interrupt the running code."""


def settle(kernel: Interruptible, drain: Callable[[float], object]) -> bool:
    """Interrupt the kernel and ``drain(seconds)`` the request's messages until it ends;
    whether it ended within :data:`STOP_GRACE`."""
    try:
        kernel.interrupt()
        drain(STOP_GRACE)
    except KernelwireError:  # still busy (KernelTimeout), or gone
        return False
    return True


def stop_now(kernel: Kernel | RemoteKernel) -> None:
    """Stop a kernel whose code did not end when interrupted, without a
    ``shutdown_request`` it could not act on (SIGTERM, then SIGKILL after 1 s)."""
    if isinstance(kernel, Kernel):
        kernel.shutdown(now=True)
    else:
        kernel.shutdown()  # the server stops it as it likes; we do not wait


def stop_early(
    kernel: Kernel | RemoteKernel, drain: Callable[[float], object], owned: bool
) -> None:
    """:func:`settle`, then :func:`stop_now` for a kernel of our own that is still busy."""
    if not settle(kernel, drain) and owned:
        stop_now(kernel)
