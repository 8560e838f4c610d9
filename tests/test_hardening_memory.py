"""Unclaimed messages are bounded by default: a program that never reads IOPub keeps the
newest ``MAX_UNCLAIMED`` messages per channel, and the drop is counted where a reader of
``get_iopub_msg()`` can see it (``client.unclaimed_dropped``). The memory figures come
from ``bench/memory.py``; here a synthetic kernel floods IOPub with messages nobody claims.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from fake_kernel import FakeKernel
from kernelwire import AsyncKernelClient, BlockingKernelClient, requests
from kernelwire.client.routing import MAX_UNCLAIMED
from kernelwire.protocol.message import Message

EXTRA = 25  # messages past the bound


def flood(kernel: FakeKernel, channel: str, identity: bytes, request: Message) -> None:
    """For ``flood``: MAX_UNCLAIMED + EXTRA stream messages nobody claims (no parent),
    numbered, then the request's own answer, whose idle comes after all of them."""
    if request["content"].get("code") == "flood":
        for number in range(MAX_UNCLAIMED + EXTRA):
            kernel.publish(kernel.message("stream", {"name": "stdout", "text": str(number)}))
    kernel.normal(channel, identity, request)


def test_blocking_client_keeps_the_newest_unclaimed_messages_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeKernel(flood) as kernel, BlockingKernelClient(connection_info=kernel.info) as client:
        assert client.max_unclaimed == MAX_UNCLAIMED == 10_000
        with caplog.at_level(logging.WARNING, logger="kernelwire"):
            list(client.submit(requests.execute("flood")).iopub(timeout=60))
        kept = [m["content"]["text"] for m in client.iopub_channel.get_msgs()]
        assert kept == [str(n) for n in range(EXTRA, MAX_UNCLAIMED + EXTRA)]
        assert client.unclaimed_dropped == {"shell": 0, "iopub": EXTRA, "stdin": 0, "control": 0}
    warnings = [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1 and "unclaimed_dropped" in warnings[0]


def test_async_client_bounds_unclaimed_messages_by_default() -> None:
    async def main() -> tuple[int, str, dict[str, int]]:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            async for _ in client.submit(requests.execute("flood")).iopub(timeout=60):
                pass
            kept = await client.iopub_channel.get_msgs()
            return len(kept), kept[0]["content"]["text"], dict(client.unclaimed_dropped)

    with FakeKernel(flood) as kernel:
        count, first, dropped = asyncio.run(main())
    assert (count, first, dropped["iopub"]) == (MAX_UNCLAIMED, str(EXTRA), EXTRA)


def test_the_bound_can_be_lifted() -> None:
    with (
        FakeKernel(flood) as kernel,
        BlockingKernelClient(connection_info=kernel.info, max_unclaimed=None) as client,
    ):
        list(client.submit(requests.execute("flood")).iopub(timeout=60))
        assert len(client.iopub_channel.get_msgs()) == MAX_UNCLAIMED + EXTRA
        assert client.unclaimed_dropped["iopub"] == 0
