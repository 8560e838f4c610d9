"""Replies that never come: a kernel that goes idle without its reply (ipykernel does it in
interrupt storms). Every client ends such a request soon after the idle with a clear
``ReplyLost``, not at its timeout; a reply that comes just after its idle still counts.

A real kernel drops the reply only now and then, so a synthetic kernel does it here.
"""

from __future__ import annotations

import asyncio
import queue

import pytest

from fake_kernel import FakeKernel
from kernelwire import (
    AsyncKernelClient,
    BlockingKernelClient,
    CallbackKernelClient,
    KernelwireError,
    ReplyLost,
    requests,
)
from kernelwire.client import routing
from kernelwire.protocol.message import Message

TIMEOUT = 20.0  # far longer than the grace: a request ended by its timeout fails the test


def idle_without_reply(kernel: FakeKernel, channel: str, identity: bytes, request: Message) -> None:
    """Busy, a line of output, idle, and no reply for ``drop``; the reply before its idle
    arrives after it for ``late`` (idle sent first); a normal answer to anything else."""
    code = request["content"].get("code")
    if code == "drop":
        kernel.status(request, "busy")
        kernel.publish(kernel.message("stream", {"name": "stdout", "text": "out\n"}, request))
        kernel.status(request, "idle")
    elif code == "late":
        kernel.status(request, "busy")
        kernel.status(request, "idle")
        kernel.reply(channel, identity, request, {"status": "ok", "execution_count": 7})
    else:
        kernel.normal(channel, identity, request)


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "REPLY_GRACE", 0.5)


def test_blocking_client_ends_a_request_idle_without_reply() -> None:
    with (
        FakeKernel(idle_without_reply) as kernel,
        BlockingKernelClient(connection_info=kernel.info) as client,
    ):
        with pytest.raises(ReplyLost, match="idle") as caught:
            client.execute("drop", reply=True, timeout=TIMEOUT)
        assert caught.value.msg_type == "execute_request"
        pending = client.submit(requests.execute("drop"))
        outputs = []
        with pytest.raises(ReplyLost):
            for msg in pending.iopub(timeout=TIMEOUT):
                outputs.append(msg["msg_type"])
        assert outputs == ["status", "stream", "status"]  # every output first, then why
        with pytest.raises(ReplyLost):
            pending.reply(timeout=TIMEOUT)
        # The client goes on: a normal request still works.
        assert client.kernel_info(reply=True, timeout=TIMEOUT)["msg_type"] == "kernel_info_reply"


def test_a_reply_just_after_its_idle_still_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "REPLY_GRACE", routing.IDLE_GRACE)
    with (
        FakeKernel(idle_without_reply) as kernel,
        BlockingKernelClient(connection_info=kernel.info) as client,
    ):
        reply = client.execute("late", reply=True, timeout=TIMEOUT)
        assert reply["content"]["execution_count"] == 7


def test_async_client_ends_a_request_idle_without_reply() -> None:
    async def main() -> None:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            with pytest.raises(ReplyLost, match="idle"):
                await client.execute("drop", reply=True, timeout=TIMEOUT)
            pending = client.submit(requests.execute("drop"))
            with pytest.raises(ReplyLost):
                async for _ in pending.iopub(timeout=TIMEOUT):
                    pass

    with FakeKernel(idle_without_reply) as kernel:
        asyncio.run(main())


def test_callback_client_ends_a_request_idle_without_reply() -> None:
    errors: queue.Queue[KernelwireError] = queue.Queue()
    done: queue.Queue[Message | None] = queue.Queue()
    with (
        FakeKernel(idle_without_reply) as kernel,
        CallbackKernelClient(connection_info=kernel.info) as client,
    ):
        client.execute_callback("drop", on_done=done.put, on_error=errors.put)
        assert isinstance(errors.get(timeout=TIMEOUT), ReplyLost)
        client.execute_callback("fine", on_done=done.put, on_error=errors.put)
        reply = done.get(timeout=TIMEOUT)
        assert reply is not None and reply["msg_type"] == "execute_reply"
        assert errors.empty()
