"""Kernels forked from a warm template against spawned ones, in the same run.

Rows (medians; forked and spawned starts alternate, so both see the same load):

- ``start to ready``: ``ForkServer.start_kernel()`` against ``start_kernel("python3")``,
  each until the kernel answers and its IOPub is joined (``--n`` of each);
- ``ready with numpy``: the same, the template having imported numpy
  (``preload=["numpy"]``), against a spawned kernel that then runs ``import numpy``; the
  forked kernel runs it too (already imported: a round trip);
- ``N at once``: ``--at-once`` kernels started together (threads), wall time until all
  answer, forked against spawned; then the memory each kernel uses alone (USS, pages
  no other process shares: a forked kernel shares the template's until it writes them).

- ``kill -9 to KernelDied``: a busy kernel killed, until its waiting request raises
  (the forked kernel's exit status comes from its template);

The template's own start (a one-off cost per template) is printed apart.

    python bench/fork.py              # 20 starts each, 20 at once
    python bench/fork.py --quick      # 5 and 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psutil

import kernelwire
from kernelwire import ForkServer, Kernel, KernelDied


def _timed(start: Callable[[], Kernel]) -> float:
    began = time.perf_counter()
    kernel = start()
    elapsed = time.perf_counter() - began
    kernel.shutdown(now=True)
    return elapsed


def _with_numpy(start: Callable[[], Kernel]) -> Kernel:
    kernel = start()
    kernel.run("import numpy").raise_for_error()
    return kernel


def _row(name: str, forked: list[float], spawned: list[float], unit: str = "ms") -> None:
    f, s = statistics.median(forked), statistics.median(spawned)
    scale = 1000.0 if unit == "ms" else 1.0
    print(f"{name:<36}{f * scale:>12.1f}{s * scale:>12.1f}{f / s:>10.3f}x{len(forked):>6}")


def starts(n: int) -> None:
    print(f"{'':<36}{'forked ' + 'ms':>12}{'spawned ms':>12}{'ratio':>11}{'n':>6}")
    began = time.perf_counter()
    with ForkServer("python3") as plain:
        template = time.perf_counter() - began
        forked: list[float] = []
        spawned: list[float] = []
        for _ in range(2):  # warm-up: file caches, the first fork's page faults
            _timed(plain.start_kernel)
            _timed(kernelwire.start_kernel)
        for _ in range(n):
            forked.append(_timed(plain.start_kernel))
            spawned.append(_timed(kernelwire.start_kernel))
        _row("start to ready", forked, spawned)
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("(numpy is not installed: no numpy row)")
        print(f"template start (one-off): {template * 1000:.0f} ms")
        return
    began = time.perf_counter()
    with ForkServer("python3", preload=["numpy"], prelude="import numpy as np") as warm:
        numpy_template = time.perf_counter() - began
        forked, spawned = [], []
        for _ in range(n):
            forked.append(_timed(lambda: _with_numpy(warm.start_kernel)))
            spawned.append(_timed(lambda: _with_numpy(kernelwire.start_kernel)))
        _row("ready with numpy imported", forked, spawned)
    print(
        f"template start (one-off): {template * 1000:.0f} ms, "
        f"with numpy {numpy_template * 1000:.0f} ms"
    )


def _death_seen(start: Callable[[], Kernel]) -> float:
    """Seconds from SIGKILL of a busy kernel to :class:`KernelDied` in its client."""
    with start() as kernel:
        client = kernel.client()
        pending = client.submit(kernelwire.requests.execute("import time; time.sleep(100)"))
        time.sleep(0.2)
        os.kill(kernel.pid, signal.SIGKILL)
        began = time.perf_counter()
        try:
            pending.reply(timeout=60)
        except KernelDied:
            return time.perf_counter() - began
    raise AssertionError("the kill went unseen")


def deaths(n: int) -> None:
    with ForkServer("python3") as server:
        forked = [_death_seen(server.start_kernel) for _ in range(n)]
    spawned = [_death_seen(kernelwire.start_kernel) for _ in range(n)]
    _row("kill -9 to KernelDied", forked, spawned)


def _uss(pid: int) -> float:
    return float(psutil.Process(pid).memory_full_info().uss)


def at_once(count: int) -> None:
    def batch(start: Callable[[], Kernel]) -> tuple[float, list[float]]:
        with ThreadPoolExecutor(count) as workers:
            began = time.perf_counter()
            kernels = list(workers.map(lambda _: start(), range(count)))
            elapsed = time.perf_counter() - began
            try:
                for kernel in kernels:  # one round each, so both have run code once
                    kernel.run("1").raise_for_error()
                uss = [_uss(kernel.pid) for kernel in kernels]
            finally:
                list(workers.map(lambda k: k.shutdown(now=True), kernels))
        return elapsed, uss

    with ForkServer("python3") as server:
        template_uss = _uss(server.pid) if server.pid else 0.0
        forked_wall, forked_uss = batch(server.start_kernel)
    spawned_wall, spawned_uss = batch(kernelwire.start_kernel)
    print(f"{'':<36}{'forked':>12}{'spawned':>12}{'ratio':>11}")
    print(
        f"{f'{count} at once, wall s':<36}{forked_wall:>12.2f}{spawned_wall:>12.2f}"
        f"{forked_wall / spawned_wall:>10.3f}x"
    )
    f, s = statistics.median(forked_uss) / 2**20, statistics.median(spawned_uss) / 2**20
    print(f"{'USS per kernel, median MiB':<36}{f:>12.1f}{s:>12.1f}{f / s:>10.3f}x")
    print(f"(the template itself: {template_uss / 2**20:.1f} MiB USS)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="starts of each kind per row")
    parser.add_argument("--at-once", type=int, default=20, help="kernels started together")
    parser.add_argument("--quick", action="store_true", help="5 starts, 5 at once")
    args = parser.parse_args()
    if args.quick:
        args.n, args.at_once = 5, 5
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    starts(args.n)
    deaths(min(args.n, 5))
    if args.at_once:
        at_once(args.at_once)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
