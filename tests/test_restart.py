"""A restart fails the requests that were waiting on the old kernel, at once, with
KernelRestarted: blocking and asyncio waiters, on a real ipykernel."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kernelwire import (
    AsyncPendingRequest,
    BlockingKernelClient,
    KernelRestarted,
    KernelwireError,
    PendingRequest,
    requests,
    start_kernel,
    start_kernel_async,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

LONG = "import time; time.sleep(60)"
WAIT = 50.0
"""The waits' own timeout: far longer than a restart, so a wait that ends with
KernelTimeout was stranded."""


class Waiter(threading.Thread):
    """Runs one wait on a thread of its own and records how it ended, and when."""

    def __init__(self, wait: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.wait = wait
        self.error: BaseException | None = None
        self.ended = 0.0

    def run(self) -> None:
        try:
            self.wait()
        except KernelwireError as exc:
            self.error = exc
        self.ended = time.monotonic()


def running(pending: PendingRequest) -> None:
    """Return once the kernel has begun running ``pending`` (its execute_input came)."""
    for msg in pending.iopub(timeout=30):
        if msg["msg_type"] == "execute_input":
            return
    raise AssertionError("the request finished before the restart")


async def running_async(pending: AsyncPendingRequest) -> None:
    """:func:`running` for an asyncio request."""
    async for msg in pending.iopub(30):
        if msg["msg_type"] == "execute_input":
            return
    raise AssertionError("the request finished before the restart")


def test_a_restart_fails_the_waiting_requests_at_once() -> None:
    with start_kernel("python3") as kernel:
        client = kernel.client()
        busy = client.submit(requests.execute(LONG))
        queued = client.submit(requests.execute("print('queued behind it')"))
        running(busy)
        waiters = [
            Waiter(lambda: busy.reply(WAIT)),
            Waiter(lambda: list(queued.events(None))),  # no timeout at all
            Waiter(lambda: kernel.run(LONG, timeout=WAIT)),
        ]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.5)  # let the run start and every waiter block
        began = time.monotonic()
        kernel.restart()
        for waiter in waiters:
            waiter.join(30)
            assert not waiter.is_alive(), "a waiter was stranded by the restart"
            assert isinstance(waiter.error, KernelRestarted), waiter.error
            assert "was restarted" in str(waiter.error)
            assert waiter.ended - began < WAIT / 2  # a safety bound: not the wait's timeout
        # Requests sent after the restart go to the new kernel, on the same clients.
        assert client.execute("1 + 1", reply=True, timeout=30)["content"]["status"] == "ok"
        assert kernel.run("'x' in dir()").text == "False"


def test_a_finished_request_is_not_failed_by_a_restart() -> None:
    with start_kernel("python3") as kernel:
        client: BlockingKernelClient = kernel.client()
        done = client.submit(requests.execute("print('before')"))
        assert done.reply(30)["content"]["status"] == "ok"
        texts = [m["content"]["text"] for m in done.iopub(30) if m["msg_type"] == "stream"]
        kernel.restart()
        assert texts == ["before\n"] and done.reply(0)["content"]["status"] == "ok"


def test_an_asyncio_restart_fails_the_waiting_requests_at_once() -> None:
    async def main() -> None:
        async with await start_kernel_async("python3") as kernel:
            client = kernel.async_client()
            await client.wait_for_ready(60)
            busy = client.submit(requests.execute(LONG))
            await running_async(busy)
            reply = asyncio.ensure_future(busy.reply(WAIT))
            run = asyncio.ensure_future(kernel.run(LONG, timeout=WAIT))
            await asyncio.sleep(0.5)  # both wait
            await kernel.restart()
            for waiting in (reply, run):
                with pytest.raises(KernelRestarted):
                    await asyncio.wait_for(waiting, WAIT / 2)
            again = await client.execute("1 + 1", reply=True, timeout=30)
            assert again["content"]["status"] == "ok"

    asyncio.run(main())


def test_a_restart_and_a_shutdown_warn_of_no_lost_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping the kernel on purpose drops its IOPub connection: that is no loss of
    output, and nothing may warn of one (nbclient's tests fail on any stderr line)."""
    caplog.set_level(logging.WARNING, logger="kernelwire")
    with start_kernel("python3") as kernel:
        client = kernel.client()
        assert kernel.run("print('before')").stdout == "before\n"
        kernel.restart()
        assert kernel.run("print('after')").stdout == "after\n"
        assert client.execute("1", reply=True, timeout=30)["content"]["status"] == "ok"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "dropped" in w], warnings


def test_the_first_request_after_a_restart_waits_for_the_new_iopub() -> None:
    """The new process drops what it publishes before the client's subscription reaches
    it (ZeroMQ's slow joiner, as at a first start): the first request after a restart is
    sent only once IOPub carries a message of the new process, so none of its output is
    lost (jupyter_client-style code lost a cell's output after restart_kernel)."""
    with start_kernel("python3") as kernel:
        client = kernel.client()
        old_session = client.execute("1", reply=True, timeout=30)["header"]["session"]
        kernel.restart()
        events: list[str] = []
        client.engine.router.listeners.append(
            lambda channel, msg: (
                events.append("new iopub")
                if channel == "iopub" and msg["header"].get("session") != old_session
                else None
            )
        )
        transport = client.engine.transport
        send = transport.send

        def recording_send(channel: Any, frames: Any) -> bool:
            if any(b'"msg_type":"execute_request"' in bytes(f).replace(b" ", b"") for f in frames):
                events.append("execute sent")
            return send(channel, frames)

        transport.send = recording_send  # type: ignore[method-assign]
        pending = client.submit(requests.execute("print('after')"))
        texts = [m["content"]["text"] for m in pending.iopub(30) if m["msg_type"] == "stream"]
        assert texts == ["after\n"]
        assert "new iopub" in events, events
        assert events.index("new iopub") < events.index("execute sent"), events
