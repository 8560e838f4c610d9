"""Trivial notebooks in a batch: local lanes against a Dask LocalCluster, same worker count.

``execute_many(paths, jobs=W)`` (W local lanes, the next kernel starting while a notebook
runs) against ``execute_many(paths, executor=..., jobs=W)`` on a ``LocalCluster`` of W
worker processes (one thread each), alternating round by round; the per-notebook
overhead of the Dask path is (Dask - local) / notebooks. Then how the Dask path's wall
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
from pathlib import Path

import distributed
import nbformat

from kernelwire import notebook


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


def run_local(paths: list[Path], workers: int) -> float:
    start = time.perf_counter()
    runs = notebook.execute_many(paths, jobs=workers)
    elapsed = time.perf_counter() - start
    assert all(run.ok for run in runs), [run.error for run in runs if not run.ok]
    return elapsed


def run_dask(client: distributed.Client, paths: list[Path], workers: int) -> float:
    start = time.perf_counter()
    runs = notebook.execute_many(paths, executor=client.get_executor(), jobs=workers)
    elapsed = time.perf_counter() - start
    assert all(run.ok for run in runs), [run.error for run in runs if not run.ok]
    return elapsed


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
        local: list[float] = []
        dask: list[float] = []
        with cluster(args.workers) as workers, distributed.Client(workers) as client:
            run_dask(client, paths[:2], args.workers)  # warm: imports on the workers
            for _ in range(rounds):
                local.append(run_local(paths, args.workers))
                dask.append(run_dask(client, paths, args.workers))
        lm, dm = statistics.median(local), statistics.median(dask)
        for name, wall in (("local lanes", lm), ("Dask       ", dm)):
            each = wall / count * 1000
            print(f"{name}, median of {rounds}: {wall:.2f} s  ({each:.0f} ms a notebook)")
        print(f"Dask overhead per notebook: {(dm - lm) / count * 1000:+.0f} ms (goal: <= 50 ms)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        if args.no_scaling:
            return
        print("Dask wall time by worker count:")
        for size in sorted({1, 2, 4} | {args.workers}):
            with cluster(size) as workers, distributed.Client(workers) as client:
                run_dask(client, paths[:2], size)
                wall = statistics.median(run_dask(client, paths, size) for _ in range(rounds))
            print(f"  {size} worker(s): {wall:.2f} s")


if __name__ == "__main__":
    main()
