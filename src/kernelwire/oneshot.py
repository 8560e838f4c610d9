"""One-call helpers: connect, run, collect, disconnect."""

from __future__ import annotations

import os

from .client.blocking import BlockingKernelClient
from .protocol import requests
from .protocol.message import Message


def get_messages(
    connection_file: str | os.PathLike[str], code: str, timeout: float | None = None
) -> list[Message]:
    """Run ``code`` on the kernel of ``connection_file``; return that request's IOPub messages.

    The list runs from ``status: busy`` to ``status: idle`` inclusive, in order, and
    holds only this request's messages. It returns as soon as ``idle`` and the reply
    have arrived. ``timeout`` (seconds) bounds the whole call.

    >>> [m["msg_type"] for m in get_messages("kernel.json", "1 + 1")]   # doctest: +SKIP
    ['status', 'execute_input', 'execute_result', 'status']
    """
    with BlockingKernelClient(connection_file) as client:
        client.wait_for_ready(timeout)
        pending = client.submit(requests.execute(code, allow_stdin=False))
        return list(pending.iopub(timeout))
