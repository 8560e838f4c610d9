"""Asyncio and callback clients, the blocking client inside a running loop, death, leaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from kernelwire import (
    AsyncKernelClient,
    BlockingKernelClient,
    CallbackKernelClient,
    ClientClosed,
    KernelDied,
    KernelProcess,
    KernelTimeout,
    requests,
)
from kernelwire.protocol.connection import ChannelName
from kernelwire.protocol.message import Message


def test_async_classic_flow_and_handles(ipykernel: KernelProcess) -> None:
    async def main() -> None:
        async with AsyncKernelClient(ipykernel.connection_file) as client:
            assert await client.is_alive()
            await client.wait_for_ready(30)
            msg_id = client.execute("7 * 6")
            msgs = []
            while True:
                try:
                    msg = await client.get_iopub_msg(timeout=1)
                except queue.Empty:
                    break
                if msg["parent_header"].get("session") == client.session.session_id:
                    msgs.append(msg)  # the module's kernel also broadcasts other clients' traffic
            assert [m["msg_type"] for m in msgs] == [
                "status",
                "execute_input",
                "execute_result",
                "status",
            ]
            assert all(m["parent_header"]["msg_id"] == msg_id for m in msgs)
            reply = await client.get_shell_msg(timeout=10)
            assert reply["parent_header"]["msg_id"] == msg_id

            assert (await client.kernel_info(reply=True, timeout=30))[
                "msg_type"
            ] == "kernel_info_reply"
            slow = client.submit(requests.execute("import time; time.sleep(0.1); print('slow')"))
            fast = client.submit(requests.execute("print('fast')"))
            fast_text = [
                m["content"]["text"] async for m in fast.iopub(30) if m["msg_type"] == "stream"
            ]
            slow_text = [
                m["content"]["text"] async for m in slow.iopub(30) if m["msg_type"] == "stream"
            ]
            assert (fast_text, slow_text) == (["fast\n"], ["slow\n"])

            outputs: list[Message] = []

            async def answer(msg: Message) -> None:
                client.input("async input")

            reply = await client.execute_interactive(
                "print(input('q? '))", output_hook=outputs.append, stdin_hook=answer, timeout=30
            )
            assert reply["content"]["status"] == "ok"
            # ipykernel may split one print into several stream messages (a timed flush).
            text = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
            assert text == "async input\n"

    asyncio.run(main())


def test_async_concurrent_requests_from_tasks(ipykernel: KernelProcess) -> None:
    async def main() -> list[str]:
        async with AsyncKernelClient(ipykernel.connection_file) as client:
            await client.wait_for_ready(30)

            async def run(i: int) -> str:
                pending = client.submit(requests.execute(f"print({i})"))
                texts = [
                    m["content"]["text"]
                    async for m in pending.iopub(30)
                    if m["msg_type"] == "stream"
                ]
                return "".join(texts)

            return await asyncio.gather(*(run(i) for i in range(20)))

    assert asyncio.run(main()) == [f"{i}\n" for i in range(20)]


def test_blocking_client_inside_a_running_event_loop(client: BlockingKernelClient) -> None:
    async def cell() -> Any:
        # As in a notebook cell: a loop is running, and the blocking API must just work.
        assert asyncio.get_running_loop().is_running()
        reply = client.execute("40 + 2", reply=True, timeout=30, user_expressions={"v": "40 + 2"})
        outputs: list[Message] = []
        client.execute_interactive("print('in loop')", output_hook=outputs.append, timeout=30)
        return reply, outputs

    reply, outputs = asyncio.run(cell())
    assert reply["content"]["user_expressions"]["v"]["data"]["text/plain"] == "42"
    # ipykernel may split one print into several stream messages (a timed flush).
    assert "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream") == (
        "in loop\n"
    )


def test_blocking_client_shared_between_threads(client: BlockingKernelClient) -> None:
    results: dict[int, str] = {}

    def work(i: int) -> None:
        pending = client.submit(requests.execute(f"print('thread {i}')"))
        results[i] = "".join(
            m["content"]["text"] for m in pending.iopub(60) if m["msg_type"] == "stream"
        )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {i: f"thread {i}\n" for i in range(8)}


def test_callback_client(ipykernel: KernelProcess) -> None:
    events: list[tuple[str, str]] = []
    unclaimed: list[str] = []
    done = threading.Event()
    replies: list[Any] = []

    def finished(reply: Message | None) -> None:
        replies.append(reply)
        done.set()

    with CallbackKernelClient(
        ipykernel.connection_file, on_unclaimed=lambda ch, m: unclaimed.append(m["msg_type"])
    ) as client:
        client.execute_callback(
            "print('cb')",
            on_message=lambda ch, m: events.append((ch, m["msg_type"])),
            on_done=finished,
        )
        assert done.wait(30)
        # the blocking API works from another thread while the reader thread runs
        assert client.kernel_info(reply=True, timeout=30)["msg_type"] == "kernel_info_reply"
        client.execute("1")
        deadline = time.monotonic() + 30
        while "execute_reply" not in unclaimed and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ("iopub", "stream") in events and ("shell", "execute_reply") in events
    assert events[-1] == ("iopub", "status") or events[-1] == ("shell", "execute_reply")
    assert replies[0]["content"]["status"] == "ok"
    assert "execute_reply" in unclaimed


def test_waits_raise_kernel_died_when_the_kernel_is_killed(fresh_kernel: KernelProcess) -> None:
    """A client from a connection file cannot watch the process: the heartbeat's dropped
    connection tells it, well before time_to_dead (3 s by default) would."""
    client = BlockingKernelClient(fresh_kernel.connection_file)
    assert client.time_to_dead == 3.0
    client.start_channels()
    try:
        client.wait_for_ready(30)
        client.execute("import time; time.sleep(60)")
        time.sleep(0.2)
        os.kill(fresh_kernel.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(KernelDied, match="closed its heartbeat connection"):
            while True:
                client.get_iopub_msg(timeout=10)
        assert time.monotonic() - started < 1.5
        assert not client.is_alive()
    finally:
        client.stop_channels()


def test_async_waits_raise_kernel_died(fresh_kernel: KernelProcess) -> None:
    async def main() -> float:
        async with AsyncKernelClient(fresh_kernel.connection_file) as client:
            await client.wait_for_ready(30)
            pending = client.submit(requests.execute("import time; time.sleep(60)"))
            await asyncio.sleep(0.2)
            os.kill(fresh_kernel.pid, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(KernelDied, match="closed its heartbeat connection"):
                await pending.reply(timeout=10)
            return time.monotonic() - started

    assert asyncio.run(main()) < 1.5


def test_timeouts(client: BlockingKernelClient) -> None:
    with pytest.raises(queue.Empty):
        client.get_stdin_msg(timeout=0.1)
    pending = client.submit(requests.execute("import time; time.sleep(1)"))
    with pytest.raises(KernelTimeout):
        pending.reply(timeout=0.1)
    assert pending.reply(timeout=30)["content"]["status"] == "ok"
    assert isinstance(KernelTimeout("x"), TimeoutError)


def test_stopped_client_raises_clear_error(ipykernel: KernelProcess) -> None:
    client = BlockingKernelClient(ipykernel.connection_file)
    with pytest.raises(ClientClosed, match="start_channels"):
        client.execute("1")
    client.start_channels()
    client.stop_channels()
    with pytest.raises(ClientClosed):
        client.get_iopub_msg(timeout=0)
    assert not client.is_alive()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_no_thread_or_fd_left_after_1000_cycles(ipykernel: KernelProcess, kind: str) -> None:
    def cycle_blocking() -> None:
        with BlockingKernelClient(ipykernel.connection_file) as kc:
            assert kc.is_alive()

    async def cycles_async(n: int) -> None:
        for _ in range(n):
            async with AsyncKernelClient(ipykernel.connection_file) as kc:
                assert await kc.is_alive()

    def run(n: int) -> None:
        if kind == "blocking":
            for _ in range(n):
                cycle_blocking()
        else:
            asyncio.run(cycles_async(n))

    run(20)  # warm up: the shared ZeroMQ context starts its I/O thread once
    threads, fds = threading.active_count(), _open_fds()
    run(1000)
    assert threading.active_count() == threads
    # ZeroMQ reaps closed sockets on its I/O thread: give it a moment, then compare.
    # A leak of one descriptor per cycle would show as about a thousand more.
    deadline = time.monotonic() + 10
    while _open_fds() > fds + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_fds() <= fds + 2


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_first_request_of_a_fresh_client_loses_no_output(
    ipykernel: KernelProcess, kind: str
) -> None:
    """ZeroMQ's slow joiner: a request sent right after connecting must not lose its first
    IOPub messages (the client waits for the kernel's iopub_welcome first)."""

    async def once_async() -> list[Message]:
        async with AsyncKernelClient(ipykernel.connection_file) as client:
            pending = client.submit(requests.execute("print('first')"))
            return [m async for m in pending.iopub(30)]

    def once() -> list[Message]:
        if kind == "async":
            return asyncio.run(once_async())
        with BlockingKernelClient(ipykernel.connection_file) as client:
            pending = client.submit(requests.execute("print('first')"))
            return list(pending.iopub(30))

    for _ in range(15):
        msgs = once()
        # A loaded kernel may send print()'s text and its newline as two stream messages.
        kinds = [m["msg_type"] for m in msgs]
        merged = [k for i, k in enumerate(kinds) if not (k == "stream" == kinds[i - 1])]
        assert merged == ["status", "execute_input", "stream", "status"], kinds
        assert "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream") == (
            "first\n"
        )


def test_a_second_client_gets_its_own_iopub_welcome(
    client: BlockingKernelClient, ipykernel: KernelProcess
) -> None:
    """A kernel's XPUB socket reports a topic to the kernel only for its first subscriber.
    Each client also subscribes to a topic of its own, so a second client is welcomed too
    (and its first request does not wait blind for a welcome that never comes)."""
    client.kernel_info(reply=True, timeout=30)  # the first subscriber is connected
    with BlockingKernelClient(ipykernel.connection_file) as second:
        welcomes: list[dict[str, Any]] = []

        def listen(channel: str, msg: Message) -> None:
            if msg["msg_type"] == "iopub_welcome":
                welcomes.append(msg["content"])

        # Nothing is read before the first wait: the listener sees every message.
        second.engine.router.listeners.append(listen)
        second.kernel_info(reply=True, timeout=30)
        assert second.engine.router.iopub_welcomed
        assert any(w["subscription"].endswith(second.session.session_id) for w in welcomes)


def _count_requests_sent(client: BlockingKernelClient | AsyncKernelClient) -> list[str]:
    """The msg_type of every request the client hands to ZeroMQ from now on, in order."""
    transport = client.engine.transport
    send = transport.send
    sent: list[str] = []

    def counting(channel: ChannelName, frames: Sequence[Any]) -> bool:
        if channel != "hb":
            header = json.loads(bytes(frames[list(frames).index(b"<IDS|MSG>") + 2]))
            sent.append(header["msg_type"])
        return send(channel, frames)

    transport.send = counting  # type: ignore[method-assign]
    return sent


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_wait_for_ready_of_a_fresh_client_asks_once(ipykernel: KernelProcess, kind: str) -> None:
    """With the kernel's welcome, readiness takes one kernel_info round trip: the join
    comes first, so the probe's statuses are certain and no second probe is needed."""

    async def once_async() -> list[str]:
        async with AsyncKernelClient(ipykernel.connection_file) as client:
            sent = _count_requests_sent(client)
            reply = await client.wait_for_ready(30)
            assert reply["content"]["status"] == "ok"
            assert client.engine.router.iopub_welcomed
            return sent

    def once() -> list[str]:
        if kind == "async":
            return asyncio.run(once_async())
        with BlockingKernelClient(ipykernel.connection_file) as client:
            sent = _count_requests_sent(client)
            reply = client.wait_for_ready(30)
            assert reply["content"]["status"] == "ok"
            assert client.engine.router.iopub_welcomed
            return sent

    for _ in range(3):
        sent = once()
        assert sent == ["kernel_info_request"]


def _leftovers(client: BlockingKernelClient) -> list[str]:
    """The msg_type of whatever is left for the user on IOPub and shell."""
    leftovers = []
    for get in (client.get_iopub_msg, client.get_shell_msg):
        with contextlib.suppress(queue.Empty):
            while True:
                leftovers.append(get(timeout=0.05)["msg_type"])
    return leftovers


async def _leftovers_async(client: AsyncKernelClient) -> list[str]:
    """The msg_type of whatever is left for the user on IOPub and shell."""
    leftovers = []
    for get in (client.get_iopub_msg, client.get_shell_msg):
        with contextlib.suppress(queue.Empty):
            while True:
                leftovers.append((await get(timeout=0.05))["msg_type"])
    return leftovers


def _as_an_older_kernel(client: BlockingKernelClient | AsyncKernelClient) -> None:
    """Make the client see no iopub_welcome, as with a kernel older than protocol 5.5."""
    router = client.engine.router
    dispatch = router.dispatch

    def without_welcome(channel: Any, msg: Message) -> Any:
        if msg["msg_type"] == "iopub_welcome":
            return None
        return dispatch(channel, msg)

    router.dispatch = without_welcome  # type: ignore[method-assign]


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_without_a_welcome_the_client_probes_and_hides_the_probes(
    ipykernel: KernelProcess, kind: str
) -> None:
    """With no welcome within the join wait (an older kernel, or a loaded one), the first
    request waits until kernel_info probes show IOPub subscribed; nobody sees the probes."""

    async def once_async() -> tuple[list[str], list[str], int]:
        async with AsyncKernelClient(ipykernel.connection_file) as client:
            _as_an_older_kernel(client)
            pending = client.submit(requests.execute("print('first')"))
            seen = [m["msg_type"] async for m in pending.iopub(30)]
            await pending.reply(30)
            await asyncio.sleep(0.3)  # let any late probe answers arrive
            leftovers = await _leftovers_async(client)
            return seen, leftovers, len(client.engine.router.swallowed)

    def once() -> tuple[list[str], list[str], int]:
        if kind == "async":
            return asyncio.run(once_async())
        with BlockingKernelClient(ipykernel.connection_file) as client:
            _as_an_older_kernel(client)
            pending = client.submit(requests.execute("print('first')"))
            seen = [m["msg_type"] for m in pending.iopub(30)]
            pending.reply(30)
            time.sleep(0.3)
            leftovers = _leftovers(client)
            return seen, leftovers, len(client.engine.router.swallowed)

    for _ in range(5):
        seen, leftovers, probes = once()
        assert probes >= 1  # the probe path ran
        merged = [k for i, k in enumerate(seen) if not (k == "stream" == seen[i - 1])]
        assert merged == ["status", "execute_input", "stream", "status"], seen
        assert leftovers == []


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_wait_for_ready_without_a_welcome_shows_no_probe(
    ipykernel: KernelProcess, kind: str
) -> None:
    """Without a welcome, readiness still comes (probes show IOPub subscribed), and neither
    the probes nor wait_for_ready's own kernel_info leave messages for the user."""

    async def once_async() -> list[str]:
        async with AsyncKernelClient(ipykernel.connection_file) as client:
            _as_an_older_kernel(client)
            reply = await client.wait_for_ready(30)
            assert reply["content"]["status"] == "ok"
            await asyncio.sleep(0.3)  # let any late probe answers arrive
            leftovers = await _leftovers_async(client)
            return leftovers

    def once() -> list[str]:
        if kind == "async":
            return asyncio.run(once_async())
        with BlockingKernelClient(ipykernel.connection_file) as client:
            _as_an_older_kernel(client)
            reply = client.wait_for_ready(30)
            assert reply["content"]["status"] == "ok"
            time.sleep(0.3)
            leftovers = _leftovers(client)
            return leftovers

    for _ in range(3):
        assert once() == []


def test_liveness_checks_run_on_an_interval_not_per_message(
    client: BlockingKernelClient,
) -> None:
    """A liveness check (a Kernel's process poll: a system call) runs every
    LIVENESS_INTERVAL while someone waits, not on every message that arrives."""
    from kernelwire.client._engine import LIVENESS_INTERVAL

    calls: list[float] = []

    def check() -> None:
        calls.append(time.monotonic())

    client.engine.liveness_checks.append(check)
    try:
        started = time.monotonic()
        for _ in range(100):
            assert client.execute("pass", reply=True, timeout=30)["content"]["status"] == "ok"
        elapsed = time.monotonic() - started
    finally:
        client.engine.liveness_checks.remove(check)
    assert calls  # it did run
    # 100 round trips deliver about 400 messages; once per interval, plus the first.
    assert len(calls) <= elapsed / LIVENESS_INTERVAL + 2, (len(calls), elapsed)
