"""Faults on real kernels: floods, sockets closed under the client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kernelwire import BlockingKernelClient, ClientClosed, Kernel, requests, start_kernel

pytestmark = pytest.mark.usefixtures("no_leaks")


def rss_mb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS")


class PeakRss:
    """Samples this process's resident memory every 10 ms."""

    def __init__(self) -> None:
        self.base = rss_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    with start_kernel("python3") as k:
        yield k


FLOOD_1GB_AT_ONCE = """
import sys
chunk = "x" * (1024 * 1024)
for _ in range(1024):
    sys.stdout.write(chunk)
sys.stdout.flush()
"""


def test_one_gigabyte_in_one_message_keeps_memory_bounded(kernel: Kernel) -> None:
    """ipykernel coalesces this flood into a single 1 GB message: ZeroMQ refuses it
    before it is held, the reply still arrives, and the request ends, marked incomplete."""
    client = kernel.client()
    with PeakRss() as memory:
        pending = client.submit(requests.execute(FLOOD_1GB_AT_ONCE))
        streamed = sum(
            len(m["content"]["text"])
            for m in pending.iopub(timeout=120)
            if m["msg_type"] == "stream"
        )
        reply = pending.reply(timeout=10)
    assert reply["content"]["status"] == "ok"
    assert memory.peak - memory.base < 200, (memory.base, memory.peak)
    assert streamed < 1024**3
    assert pending.incomplete
    # The connection recovered: the next request is whole.
    after = client.submit(requests.execute("print('still here')"))
    texts = [m["content"]["text"] for m in after.iopub(timeout=30) if m["msg_type"] == "stream"]
    assert "".join(texts) == "still here\n" and not after.incomplete


FLOOD_64MB_STREAMED = """
import sys, time
chunk = "y" * (1024 * 1024)
for i in range(64):
    sys.stdout.write(chunk)
    if i % 8 == 7:
        sys.stdout.flush()
        time.sleep(0.05)
sys.stdout.flush()
"""


def test_large_streamed_output_arrives_whole(kernel: Kernel) -> None:
    client = kernel.client()
    with PeakRss() as memory:
        pending = client.submit(requests.execute(FLOOD_64MB_STREAMED))
        streamed = 0
        for msg in pending.iopub(timeout=120):
            if msg["msg_type"] == "stream":
                streamed += len(msg["content"]["text"])
    assert streamed == 64 * 1024 * 1024
    assert not pending.incomplete
    assert memory.peak - memory.base < 200


def test_sockets_closed_under_the_client(kernel: Kernel) -> None:
    client = kernel.client()
    pending = client.submit(requests.execute("import time; time.sleep(0.5); print('late')"))
    client.engine.transport.sockets["iopub"].close(linger=0)  # yanked from under it
    with pytest.raises(ClientClosed, match="closed under it"):
        list(pending.iopub(timeout=10))  # a clear error at once, no hang
    client.stop_channels()
    fresh = BlockingKernelClient(connection_info=kernel.connection_info)
    with fresh:
        assert fresh.execute("1", reply=True, timeout=30)["content"]["status"] == "ok"


def test_run_marks_a_lost_flood_and_still_returns(kernel: Kernel) -> None:
    with PeakRss() as memory:
        result = kernel.run(FLOOD_1GB_AT_ONCE, timeout=120)
    assert result.status == "ok" and result.incomplete
    assert "output lost" in result.stderr
    assert memory.peak - memory.base < 200
    assert kernel.run("'fine'").text == "'fine'"
