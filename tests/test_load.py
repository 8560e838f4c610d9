"""Load: many requests in flight on one client, many kernels from one event loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from kernelwire import (
    AsyncKernelClient,
    BlockingKernelClient,
    KernelProcess,
    requests,
    start_kernel_async,
)
from kernelwire.protocol.message import Message


def test_1000_requests_in_flight_are_each_routed_to_their_request(
    client: BlockingKernelClient,
) -> None:
    # IPython completes with jedi by default, about 190 ms per request on a loaded machine:
    # its 333 completions took most of this test's time limit. The routing is what is tested.
    setup = client.execute("get_ipython().Completer.use_jedi = False", reply=True, timeout=60)
    assert setup["content"]["status"] == "ok"
    pending = []
    for i in range(1000):
        kind = i % 3
        if kind == 0:
            request = requests.execute(f"print({i})", store_history=False)
        elif kind == 1:
            request = requests.complete(f"pri{'n' * (i % 2)}")
        else:
            request = requests.inspect("len")
        pending.append((i, kind, client.submit(request)))
    sent = time.monotonic()
    received = 0
    # Read them in reverse order: the earlier requests' messages must wait, not vanish.
    for i, kind, handle in reversed(pending):
        events = list(handle.events(timeout=120))
        received += len(events)
        reply = handle.reply(timeout=1)
        assert reply["parent_header"]["msg_id"] == handle.msg_id
        assert all(m["parent_header"]["msg_id"] == handle.msg_id for _, m in events)
        if kind == 0:
            texts = [m["content"]["text"] for ch, m in events if m["msg_type"] == "stream"]
            assert "".join(texts) == f"{i}\n", (i, texts)  # ipykernel may split a print
        elif kind == 1:
            assert reply["msg_type"] == "complete_reply" and "print" in reply["content"]["matches"]
        else:
            assert reply["msg_type"] == "inspect_reply" and reply["content"]["found"]
    assert received >= 1000 * 3  # at least busy, idle and the reply for each
    assert time.monotonic() - sent < 120
    assert client.router.rejected == 0 and client.router.dropped == 0
    assert not client.router.pending


# 64 ipykernel start-ups are about 100 s of CPU: on a 2-core machine shared with other
# work (a -n 2 run, other suites) this took 93-120 s, so pytest's default limit of 120 s
# was no longer a safety net. The kernels' own start and request timeouts still apply.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("count", [64])
def test_many_kernels_from_one_event_loop(count: int) -> None:
    """Kernels driven concurrently from one asyncio loop, each getting its own answers."""

    async def main() -> list[str]:
        # Each keeps its IPython history in memory, as nbclient's kernels do: 64 kernels
        # writing one history database at once made one print "database is locked" into
        # a cell's output.
        memory = ["--HistoryManager.hist_file=:memory:"]
        kernels = await asyncio.gather(
            *(
                start_kernel_async("python3", startup_timeout=180, extra_arguments=memory)
                for _ in range(count)
            )
        )
        try:

            async def drive(index: int) -> str:
                client: AsyncKernelClient = kernels[index].async_client()
                try:
                    await client.wait_for_ready(60)
                    outputs: list[Message] = []
                    for step in range(5):
                        pending = client.submit(requests.execute(f"print({index} * 100 + {step})"))
                        outputs.extend(
                            [m async for m in pending.iopub(60) if m["msg_type"] == "stream"]
                        )
                    return "".join(m["content"]["text"] for m in outputs)
                finally:
                    client.stop_channels()

            return await asyncio.gather(*(drive(i) for i in range(count)))
        finally:
            await asyncio.gather(*(kernel.shutdown(now=True) for kernel in kernels))

    results = asyncio.run(main())
    assert results == ["".join(f"{i * 100 + s}\n" for s in range(5)) for i in range(count)]


def test_slow_consumer_loses_nothing(ipykernel: KernelProcess) -> None:
    with BlockingKernelClient(ipykernel.connection_file) as client:
        client.wait_for_ready(30)
        handle = client.submit(requests.execute("for i in range(2000): print(i, flush=True)"))
        time.sleep(2.0)  # the kernel floods while nobody reads
        text = "".join(m["content"]["text"] for m in handle.iopub(60) if m["msg_type"] == "stream")
        assert text == "".join(f"{i}\n" for i in range(2000))


CLIENTS_PAST_THE_SOCKET_LIMIT = """
import sys
from kernelwire import BlockingKernelClient
clients = []
for _ in range(int(sys.argv[2])):
    client = BlockingKernelClient()
    client.load_connection_file(sys.argv[1])
    client.start_channels()
    clients.append(client)
reply = clients[-1].execute("6 * 7", reply=True, timeout=60)
assert reply["content"]["status"] == "ok", reply
for client in clients:
    client.stop_channels()
print("ok", len(clients))
"""


def test_a_program_may_hold_more_zeromq_sockets_than_zeromqs_default(
    ipykernel: KernelProcess,
) -> None:
    """ZeroMQ allows 1023 sockets per context unless told otherwise: near 100 kernels a
    program could open no more (``ZMQError: Too many open files``). 200 clients of one
    kernel (over 1,000 sockets) in a fresh process, where kernelwire makes the context."""
    count = 200
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENTS_PAST_THE_SOCKET_LIMIT,
            str(ipykernel.connection_file),
            str(count),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", str(count)]
