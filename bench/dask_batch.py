"""Trivial notebooks in a batch: local lanes against a Dask LocalCluster, same worker count.

``execute_many(paths, jobs=W)`` (W local lanes, the next kernel starting while a notebook
runs) against ``execute_many(paths, executor=..., jobs=W)`` on a ``LocalCluster`` of W
worker processes (one thread each), alternating round by round; the per-notebook
overhead of the Dask path is (Dask - local) / notebooks. Beside each wall time, the CPU
a notebook took in the calling process (local lanes; the scheduler and nannies of the
LocalCluster live there too) and in the worker processes, each with the kernels it
started: on a machine shared with other work, the wall times move by hundreds of
milliseconds a notebook between runs, the CPU much less. Then how the Dask path's wall
time changes with the worker count. The machine's cores bound both: past them, more
workers only share the same CPUs.

    python bench/dask_batch.py [--quick] [--notebooks 40] [--workers 2] [--rounds 3]
                               [--no-scaling]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import distributed
import nbformat
import psutil

from kernelwire import notebook


class Round(NamedTuple):
    wall: float
    caller_cpu: float
    """CPU seconds of the calling process and the kernels it started."""
    workers_cpu: float
    """CPU seconds of the Dask worker processes and the kernels they started."""


def write_notebooks(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nb.cells = [nbformat.v4.new_code_cell(f"x = {index}"), nbformat.v4.new_code_cell("x")]
        path = folder / f"n{index:03}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def cpu_seconds() -> tuple[float, float]:
    """This process's CPU seconds: its own, and its waited-for children's (kernels)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system, times.children_user + times.children_system


def cluster_cpu(client: distributed.Client) -> tuple[float, float]:
    """CPU seconds of this process (scheduler, nannies, client, local lanes) and of
    the Dask worker processes, each with the kernels it started (reaped) included."""
    own, kernels = cpu_seconds()
    workers = client.run(cpu_seconds).values()
    return own + kernels, sum(own + kernels for own, kernels in workers)


def timed(client: distributed.Client, batch: Callable[[], list[notebook.NotebookRun]]) -> Round:
    before, start = cluster_cpu(client), time.perf_counter()
    runs = batch()
    elapsed = time.perf_counter() - start
    after = cluster_cpu(client)
    assert all(run.ok for run in runs), [run.error for run in runs if not run.ok]
    return Round(elapsed, after[0] - before[0], after[1] - before[1])


def run_local(client: distributed.Client, paths: list[Path], workers: int) -> Round:
    return timed(client, lambda: notebook.execute_many(paths, jobs=workers))


def run_dask(client: distributed.Client, paths: list[Path], workers: int) -> Round:
    executor = client.get_executor()
    return timed(client, lambda: notebook.execute_many(paths, executor=executor, jobs=workers))


def cluster(workers: int) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_port=0,
        silence_logs=logging.ERROR,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer notebooks and rounds")
    parser.add_argument("--notebooks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-scaling", action="store_true", help="only the overhead, not the worker counts"
    )
    args = parser.parse_args()
    count = 10 if args.quick else args.notebooks
    rounds = 1 if args.quick else args.rounds
    print(
        f"{count} two-cell notebooks, {args.workers} workers, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    with tempfile.TemporaryDirectory() as folder:
        paths = write_notebooks(Path(folder), count)
        local: list[Round] = []
        dask: list[Round] = []
        with cluster(args.workers) as workers, distributed.Client(workers) as client:
            run_dask(client, paths[:2], args.workers)  # warm: imports on the workers
            for _ in range(rounds):
                local.append(run_local(client, paths, args.workers))
                dask.append(run_dask(client, paths, args.workers))
        lm, dm = (statistics.median(r.wall for r in rs) for rs in (local, dask))
        for name, wall, rs in (("local lanes", lm, local), ("Dask       ", dm, dask)):
            each = wall / count * 1000
            # CPU: less moved by the machine's other work than wall time is.
            caller, on_workers = (
                statistics.median(getattr(r, part) for r in rs) / count * 1000
                for part in ("caller_cpu", "workers_cpu")
            )
            print(
                f"{name}, median of {rounds}: {wall:.2f} s  ({each:.0f} ms a notebook); "
                f"CPU a notebook: {caller:.0f} ms caller, {on_workers:.0f} ms workers "
                "(each with its kernels)"
            )
        print(f"Dask overhead per notebook: {(dm - lm) / count * 1000:+.0f} ms (goal: <= 50 ms)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        if args.no_scaling:
            return
        print("Dask wall time by worker count:")
        for size in sorted({1, 2, 4} | {args.workers}):
            with cluster(size) as workers, distributed.Client(workers) as client:
                run_dask(client, paths[:2], size)
                wall = statistics.median(run_dask(client, paths, size).wall for _ in range(rounds))
            print(f"  {size} worker(s): {wall:.2f} s")


if __name__ == "__main__":
    main()
