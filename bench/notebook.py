"""A 200-cell trivial notebook, end to end (kernel start included): kernelwire vs nbclient.

Each run reads nothing from disk: a fresh copy of the same in-memory notebook is
executed, kernel start and shutdown included, alternately by ``kernelwire.notebook``
and by ``nbclient.NotebookClient``.

    python bench/notebook.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import nbclient
import nbformat

from _common import table
from kernelwire import notebook


def trivial_notebook(cells: int) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(f"x = {i}\nx + 1") for i in range(cells)]
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    nb = trivial_notebook(200)
    times: dict[str, list[float]] = {
        "kernelwire notebook.execute": [],
        "nbclient NotebookClient": [],
    }
    for _ in range(rounds):
        started = time.perf_counter()
        ours = notebook.execute(copy.deepcopy(nb))
        times["kernelwire notebook.execute"].append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs = copy.deepcopy(nb)
        nbclient.NotebookClient(theirs, kernel_name="python3").execute()
        times["nbclient NotebookClient"].append(time.perf_counter() - started)
        assert ours.cells[-1].outputs[0]["data"] == theirs.cells[-1].outputs[0]["data"]
    table(times, "s", 1.0)
    ratio = statistics.median(times["nbclient NotebookClient"]) / statistics.median(
        times["kernelwire notebook.execute"]
    )
    print(f"200-cell notebook: kernelwire is {ratio:.2f}x faster end to end (goal >= 2x)")


if __name__ == "__main__":
    main()
