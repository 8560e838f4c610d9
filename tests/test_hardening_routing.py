"""Hostile replies from a synthetic kernel: every client rejects them, counts them, and
still delivers every genuine message around them.

A real kernel never sends these (a parent id that is not a string, a reply of the
wrong type, a replayed reply), so the tiny raw-pyzmq kernel of ``fake_kernel`` does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import threading
from typing import Any

import pytest
import zmq

from fake_kernel import FakeKernel, reply_type
from kernelwire import (
    AsyncKernelClient,
    BlockingKernelClient,
    CallbackKernelClient,
    ClientClosed,
    KernelDied,
    ProtocolError,
    requests,
)
from kernelwire.protocol.codec import Session
from kernelwire.protocol.message import Message

BAD_PARENT_IDS: list[Any] = [["a", "list"], {"a": "dict"}, 42]


def bad_parents_then_reply(
    kernel: FakeKernel, channel: str, identity: bytes, request: Message
) -> None:
    """Signed replies whose parent msg_id is not a string, then the genuine reply, at once
    (they reach the client in one batch)."""
    session = request["header"]["session"]
    for bad in BAD_PARENT_IDS:
        msg = kernel.message(
            reply_type(request), {"status": "ok"}, {"msg_id": bad, "session": session}
        )
        kernel.send(channel, identity, msg)
        kernel.publish(kernel.message("stream", {"name": "stdout", "text": "x"}, {"msg_id": bad}))
    kernel.normal(channel, identity, request)


def test_codec_refuses_a_parent_msg_id_that_is_not_a_string() -> None:
    sender = Session(b"key")
    for bad in BAD_PARENT_IDS:
        msg = sender.message("execute_reply", {"status": "ok"})
        msg["parent_header"] = {"msg_id": bad}
        with pytest.raises(ProtocolError, match="parent_header msg_id"):
            Session(b"key").decode(sender.encode(msg))


def test_blocking_client_rejects_bad_parent_ids_and_keeps_the_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        FakeKernel(bad_parents_then_reply) as kernel,
        BlockingKernelClient(connection_info=kernel.info) as client,
    ):
        with caplog.at_level(logging.WARNING, logger="kernelwire"):
            reply = client.kernel_info(reply=True, timeout=30)
            assert reply["msg_type"] == "kernel_info_reply"
            pending = client.submit(requests.execute("x"))
            assert pending.reply(timeout=30)["msg_type"] == "execute_reply"
            assert [m["msg_type"] for m in pending.iopub(timeout=30)] == ["status", "status"]
        # Both requests' bad messages (3 on shell, 3 on IOPub each) were refused, not queued.
        assert client.router.rejected == 12
        assert client.shell_channel.get_msgs() == []
        assert [m["msg_type"] for m in client.iopub_channel.get_msgs()] == ["status", "status"]
    assert sum("parent_header msg_id" in r.getMessage() for r in caplog.records) == 12


def test_async_client_rejects_bad_parent_ids_and_keeps_the_reply() -> None:
    async def main() -> tuple[str, int]:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            reply = await client.kernel_info(reply=True, timeout=30)
            assert reply["msg_type"] == "kernel_info_reply"
            pending = client.submit(requests.execute("x"))
            events = [(channel, m["msg_type"]) async for channel, m in pending.events(30)]
            # Its reply and idle came after every bad message before them: all were read.
            return events.count(("shell", "execute_reply")), client.router.rejected

    with FakeKernel(bad_parents_then_reply) as kernel:
        assert asyncio.run(main()) == (1, 12)


def test_callback_client_rejects_bad_parent_ids_and_its_reader_lives_on() -> None:
    replies: queue.Queue[Message | None] = queue.Queue()
    deaths: list[Any] = []
    with (
        FakeKernel(bad_parents_then_reply) as kernel,
        CallbackKernelClient(connection_info=kernel.info, on_death=deaths.append) as client,
    ):
        for _ in range(2):  # the second proves the reader thread survived the first
            # Done once its reply and idle came: every bad message before them was read.
            client.execute_callback("x", on_done=replies.put)
            reply = replies.get(timeout=30)
            assert reply is not None and reply["msg_type"] == "execute_reply"
        assert client.router.rejected == 12
        assert client._thread is not None and client._thread.is_alive()
    assert deaths == []
    assert not any(t.name == "kernelwire-reader" for t in threading.enumerate())


def silent(kernel: FakeKernel, channel: str, identity: bytes, request: Message) -> None:
    """A kernel that takes requests and never answers them."""


def test_callback_reader_that_stops_tells_every_callback_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A socket that fails under the reader thread stops it: the request's on_done and
    the client's on_death both hear of it (before, the thread ended and nobody heard)."""
    ended: queue.Queue[Message | None] = queue.Queue()
    deaths: queue.Queue[BaseException] = queue.Queue()
    with (
        FakeKernel(silent) as kernel,
        CallbackKernelClient(connection_info=kernel.info, on_death=deaths.put) as client,
    ):
        client.execute_callback("never answered", on_done=ended.put)

        def failing_poll(timeout: int | None = None) -> list[Any]:
            raise zmq.ZMQError(errno.ENOTSOCK)

        monkeypatch.setattr(client.engine._poller, "poll", failing_poll)
        client.engine.wake()
        death = deaths.get(timeout=30)
        assert isinstance(death, KernelDied) and "reader thread" in str(death)
        assert isinstance(death.__cause__, ClientClosed)
        assert ended.get(timeout=30) is None  # ended, without a reply
        with pytest.raises(KernelDied, match="reader thread"):
            client.kernel_info(reply=True, timeout=30)


def test_callback_reader_failure_reaches_on_error_and_every_waiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: queue.Queue[BaseException] = queue.Queue()
    deaths: queue.Queue[BaseException] = queue.Queue()
    with (
        FakeKernel() as kernel,
        CallbackKernelClient(connection_info=kernel.info, on_death=deaths.put) as client,
    ):
        client.wait_for_ready(30)

        def broken(channel: str, msg: Message) -> None:
            raise RuntimeError("a bug in routing")

        monkeypatch.setattr(client.engine.router, "dispatch", broken)
        client.execute_callback("x", on_done=errors.put, on_error=errors.put)
        error = errors.get(timeout=30)
        assert isinstance(error, KernelDied) and "RuntimeError: a bug in routing" in str(error)
        assert deaths.get(timeout=30) is error
        assert isinstance(error.__cause__, RuntimeError)
        with pytest.raises(KernelDied, match="a bug in routing"):
            client.submit(requests.kernel_info()).reply(timeout=30)
        assert errors.empty()  # each request ends once


FILLERS = 12  # more signed messages than the clients' shrunken replay window (8) holds
REPLAY_WINDOW = 8


def hostile(kernel: FakeKernel, channel: str, identity: bytes, request: Message) -> None:
    """Answers ``execute_request`` by its code: ``wrong type`` gets a complete_reply before
    its execute_reply; ``replay now`` gets its reply replayed (after the replay window
    has moved past it) before its idle; ``save`` is answered normally, and the next
    ``kernel_info_request`` gets that old reply replayed first."""
    code = request["content"].get("code")
    if code == "wrong type":
        kernel.reply(channel, identity, request, {"status": "ok", "matches": []}, "complete_reply")
        kernel.normal(channel, identity, request)
        return
    if code in ("replay now", "save"):
        kernel.status(request, "busy")
        frames = kernel.reply(channel, identity, request, {"status": "ok", "execution_count": 1})
        if code == "save":
            kernel.saved = frames  # type: ignore[attr-defined]
        else:
            replay_after_window(kernel, channel, identity, frames)
        kernel.status(request, "idle")
        return
    saved = getattr(kernel, "saved", None)
    if request["msg_type"] == "kernel_info_request" and saved is not None:
        replay_after_window(kernel, channel, identity, saved)
    kernel.normal(channel, identity, request)


def replay_after_window(
    kernel: FakeKernel, channel: str, identity: bytes, frames: list[bytes]
) -> None:
    for _ in range(FILLERS):  # on the same socket: they reach the client before the replay
        kernel.send(channel, identity, kernel.message("filler"))
    kernel.send_frames(channel, identity, frames)


def shrunken_window(client: Any) -> Any:
    """``client`` with a replay window of REPLAY_WINDOW signatures (65,536 by default)."""
    guard = client.session.replay_guard
    assert guard is not None
    guard.capacity = REPLAY_WINDOW
    return client


def test_a_reply_of_the_wrong_type_does_not_complete_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeKernel(hostile) as kernel, BlockingKernelClient(connection_info=kernel.info) as client:
        with caplog.at_level(logging.WARNING, logger="kernelwire"):
            reply = client.execute("wrong type", reply=True, timeout=30)
        assert reply["msg_type"] == "execute_reply"
        assert client.router.rejected == 1
        assert client.shell_channel.get_msgs() == []
    assert any(
        "protocol violation" in r.getMessage() and "complete_reply" in r.getMessage()
        for r in caplog.records
    )


def test_async_and_callback_clients_refuse_a_reply_of_the_wrong_type() -> None:
    async def main() -> tuple[str, int]:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            reply = await client.execute("wrong type", reply=True, timeout=30)
            return reply["msg_type"], client.router.rejected

    replies: queue.Queue[Message | None] = queue.Queue()
    with FakeKernel(hostile) as kernel:
        assert asyncio.run(main()) == ("execute_reply", 1)
        with CallbackKernelClient(connection_info=kernel.info) as client:
            client.execute_callback("wrong type", on_done=replies.put)
            reply = replies.get(timeout=30)
            assert reply is not None and reply["msg_type"] == "execute_reply"
            assert client.router.rejected == 1


def test_a_replayed_reply_past_the_window_is_refused_while_its_request_is_tracked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        FakeKernel(hostile) as kernel,
        shrunken_window(BlockingKernelClient(connection_info=kernel.info)) as client,
    ):
        with caplog.at_level(logging.WARNING, logger="kernelwire"):
            pending = client.submit(requests.execute("replay now"))
            # Shell is ordered: once this reply is in, so is the replay, read while
            # `pending` was tracked.
            client.kernel_info(reply=True, timeout=30)
            events = [(channel, m["msg_type"]) for channel, m in pending.events(timeout=30)]
        assert events.count(("shell", "execute_reply")) == 1
        assert client.router.rejected == 1
    assert any("answered already" in r.getMessage() for r in caplog.records)


def test_a_replayed_reply_past_the_window_is_refused_after_its_request_ended() -> None:
    with (
        FakeKernel(hostile) as kernel,
        shrunken_window(BlockingKernelClient(connection_info=kernel.info)) as client,
    ):
        assert client.execute("save", reply=True, timeout=30)["content"]["execution_count"] == 1
        assert client.kernel_info(reply=True, timeout=30)["msg_type"] == "kernel_info_reply"
        # The old reply came back before the kernel_info reply, on the same socket.
        assert {m["msg_type"] for m in client.shell_channel.get_msgs()} == {"filler"}
        assert client.router.rejected == 1


def test_async_and_callback_clients_refuse_a_replayed_reply() -> None:
    async def main() -> tuple[int, int]:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            shrunken_window(client)
            pending = client.submit(requests.execute("replay now"))
            await client.kernel_info(reply=True, timeout=30)  # after the replay, on shell
            events = [(channel, m["msg_type"]) async for channel, m in pending.events(30)]
            return events.count(("shell", "execute_reply")), client.router.rejected

    done: queue.Queue[Message | None] = queue.Queue()
    seen: list[str] = []
    with FakeKernel(hostile) as kernel:
        assert asyncio.run(main()) == (1, 1)
        with shrunken_window(CallbackKernelClient(connection_info=kernel.info)) as client:
            client.execute_callback(
                "replay now", on_message=lambda ch, m: seen.append(m["msg_type"]), on_done=done.put
            )
            assert done.get(timeout=30) is not None
            client.kernel_info(reply=True, timeout=30)  # the replay was read before this
            assert seen.count("execute_reply") == 1 and client.router.rejected == 1


def test_async_reader_failure_reaches_every_waiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the loop reads the sockets: before, the loop only logged it and
    the waiter timed out; now the waiter hears why at once."""

    async def main() -> None:
        async with AsyncKernelClient(connection_info=kernel.info) as client:
            await client.wait_for_ready(30)

            def broken(channel: str, msg: Message) -> None:
                raise RuntimeError("a bug in routing")

            monkeypatch.setattr(client.engine.router, "dispatch", broken)
            with pytest.raises(KernelDied, match="RuntimeError: a bug in routing"):
                await client.kernel_info(reply=True, timeout=30)

    with FakeKernel() as kernel:
        asyncio.run(main())
