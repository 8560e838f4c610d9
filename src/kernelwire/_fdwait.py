"""Waiting for file descriptors to become readable, with no limit on their numbers.

``select.select`` refuses descriptors of 1024 and above (``FD_SETSIZE``); a program
holding a hundred kernels' sockets passes that, so waits here use ``poll``.
"""

from __future__ import annotations

import select
from collections.abc import Sequence


def readable(fds: Sequence[int], timeout: float | None) -> list[int]:
    """The descriptors of ``fds`` that are readable (or closed) within ``timeout`` seconds
    (``None``: wait for ever); an empty list when the time ran out."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    millis = None if timeout is None else max(int(timeout * 1000.0 + 0.999), 0)
    return [fd for fd, _ in poller.poll(millis)]
