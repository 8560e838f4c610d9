"""Kernel pool: ``KernelPool.acquire()`` against a cold ``start_kernel()``, in one run.

A cold start launches ipykernel and waits until it answers (kernel_info reply and
IOPub idle). ``acquire()`` hands out a kernel the pool started beforehand; the pool is
refilled (untimed) between acquisitions, as it would be between a service's requests.
For reference, jupyter_client's ``KernelManager.start_kernel()`` + ``wait_for_ready()``
is timed in the same run.

    python bench/pool.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from kernelwire import KernelPool, start_kernel


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cold_kernelwire(rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        kernel = start_kernel("python3")
        times.append(time.perf_counter() - started)
        kernel.shutdown(now=True)
    return times


def cold_jupyter_client(rounds: int) -> list[float]:
    from jupyter_client import KernelManager

    times = []
    for _ in range(rounds):
        manager = KernelManager(kernel_name="python3")
        started = time.perf_counter()
        manager.start_kernel()
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(60)
        times.append(time.perf_counter() - started)
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return times


def pooled(rounds: int) -> list[float]:
    times = []
    with KernelPool("python3", size=2) as pool:
        for _ in range(rounds):
            pool.wait_ready(120)
            started = time.perf_counter()
            kernel = pool.acquire()
            times.append(time.perf_counter() - started)
            pool.release(kernel, restart=False)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else 8
    results = {
        "kernelwire start_kernel (cold)": cold_kernelwire(rounds),
        "jupyter_client KernelManager (cold)": cold_jupyter_client(rounds),
        "kernelwire KernelPool.acquire": pooled(rounds * 3),
    }
    print(f"{'what':<38}{'median ms':>12}{'p90 ms':>10}{'n':>5}")
    for name, values in results.items():
        ms = [v * 1000 for v in values]
        print(f"{name:<38}{statistics.median(ms):>12.2f}{percentile(ms, 0.9):>10.2f}{len(ms):>5}")
    cold = statistics.median(results["kernelwire start_kernel (cold)"])
    warm = statistics.median(results["kernelwire KernelPool.acquire"])
    print(f"acquire is {cold / warm:,.0f}x faster than a cold start (goal: >= 20x)")


if __name__ == "__main__":
    main()
