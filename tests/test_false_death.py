"""A kernel that is alive is never reported dead: real kernels, loaded machines, restarts.

Each of these used to raise ``KernelDied`` from the heartbeat while the kernel was fine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kernelwire import BlockingKernelClient, KernelProcess, requests, run_kernel_in_process
from kernelwire.connection_file import write_connection_file
from kernelwire.lifecycle import start_kernel

HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def cpu_hogs(seconds: float, per_core: int = 3) -> Iterator[None]:
    """Busy processes, ``per_core`` for each core, each ending by itself after ``seconds``."""
    count = per_core * (os.cpu_count() or 1)
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG.format(seconds=seconds)]) for _ in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(30)


@contextlib.contextmanager
def started_later(path: str, delay: float) -> Iterator[list[KernelProcess]]:
    """An ipykernel started on ``path`` after ``delay`` seconds, from another thread."""
    started: list[KernelProcess] = []

    def start() -> None:
        time.sleep(delay)
        started.append(run_kernel_in_process(path, startup_timeout=120))

    thread = threading.Thread(target=start, name="start-kernel-later")
    thread.start()
    try:
        yield started
    finally:
        thread.join(180)
        for kernel in started:
            kernel.stop()


def test_waiting_for_a_kernel_that_starts_later_than_time_to_dead(tmp_path: Path) -> None:
    """issue: ``wait_for_ready`` on a kernel still starting reported "stopped answering its
    heartbeat": pings were queued before the kernel listened, and their clock ran."""
    path, _ = write_connection_file(tmp_path / "kernel.json")
    client = BlockingKernelClient(path, time_to_dead=1.0)
    with client, started_later(path, delay=2.5):
        reply = client.wait_for_ready(120)
        assert reply["content"]["status"] == "ok"
        assert client.is_alive()


def test_a_pong_that_arrived_while_the_client_was_idle_is_not_missed(
    fresh_kernel: KernelProcess,
) -> None:
    """A blocking client reads only while someone waits: a ping left out at the end of a
    wait, answered while nobody waited, was judged before the socket was read."""
    with BlockingKernelClient(fresh_kernel.connection_file) as client:
        client.wait_for_ready(60)
        for _ in range(3):
            pending = client.submit(requests.kernel_info())
            time.sleep(0.7)  # the reply is in; the next pump sends a ping
            os.kill(fresh_kernel.pid, signal.SIGSTOP)  # so that its pong comes late
            try:
                pending.reply(timeout=30)  # returns at once, the ping still out
            finally:
                os.kill(fresh_kernel.pid, signal.SIGCONT)
            time.sleep(client.time_to_dead + 0.5)  # the pong comes while nobody reads
            assert client.kernel_info(reply=True, timeout=60)["content"]["status"] == "ok"


def test_no_false_death_on_a_loaded_machine(tmp_path: Path) -> None:
    """Three busy processes per core for at most 20 s, while a kernel starts and answers
    a client that knows nothing but the connection file (``time_to_dead`` of 1 s), and a
    kernel started by kernelwire answers its own client."""
    path, _ = write_connection_file(tmp_path / "kernel.json")
    with cpu_hogs(seconds=20), start_kernel("python3", startup_timeout=120) as kernel:
        own = kernel.client(time_to_dead=1.0)
        client = BlockingKernelClient(path, time_to_dead=1.0)
        with client, started_later(path, delay=0.5):
            client.wait_for_ready(120)
            for step in range(10):
                for kc in (client, own):
                    reply = kc.execute(f"x = {step}", reply=True, timeout=120)
                    assert reply["content"]["status"] == "ok"
                time.sleep(0.3)
        own.stop_channels()


def test_clients_kept_across_a_restart_keep_working() -> None:
    """issue 12: a client kept across ``restart(now=True)`` raised "closed its heartbeat
    connection"; the old process's dropped connection, read once the new one listens, is
    a reconnect, not a death. Both kinds of client, idle through the restart."""
    with start_kernel("python3") as kernel:
        assert kernel.connection_file is not None
        own = kernel.client()
        other = BlockingKernelClient(kernel.connection_file)
        other.start_channels()
        try:
            other.wait_for_ready(60)
            with cpu_hogs(seconds=10, per_core=2):
                kernel.restart(now=True)
                for kc in (own, other):
                    reply = kc.execute("import os; os.getpid()", reply=True, timeout=60)
                    assert reply["content"]["status"] == "ok"
                    assert kc.is_alive()
        finally:
            other.stop_channels()
            own.stop_channels()
