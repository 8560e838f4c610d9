"""nbclient on kernelwire's kernel manager against nbclient on jupyter_client's.

The same ``nbclient.NotebookClient``, only ``kernel_manager_class`` differs:
``kernelwire.manager.AsyncKernelManager`` or jupyter_client's ``AsyncKernelManager``
(nbclient's default). One trivial 200-cell notebook (kernel start and shutdown
included) and a batch of 4 such notebooks run one after the other, the two managers
alternating round by round in one run; medians.

    python bench/nbclient_managers.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import nbclient
import nbformat
from jupyter_client import AsyncKernelManager as JupyterManager

from _common import table
from kernelwire.manager import AsyncKernelManager as KernelwireManager
from notebook import BATCH, CELLS, trivial_notebook

MANAGERS: dict[str, type] = {
    "nbclient on jupyter_client's manager": JupyterManager,
    "nbclient on kernelwire's manager": KernelwireManager,
}


def run_notebook(nb: nbformat.NotebookNode, manager: type) -> nbformat.NotebookNode:
    copied = copy.deepcopy(nb)
    nbclient.NotebookClient(copied, kernel_name="python3", kernel_manager_class=manager).execute()
    return copied


def measure(nb: nbformat.NotebookNode, rounds: int, notebooks: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in MANAGERS}
    for _ in range(rounds):
        outputs = []
        for name, manager in MANAGERS.items():
            started = time.perf_counter()
            for _ in range(notebooks):
                done = run_notebook(nb, manager)
            times[name].append(time.perf_counter() - started)
            outputs.append(done.cells[-1].outputs)
        assert outputs[0] == outputs[1], outputs
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(title)
    table(times, "s", 1.0)
    theirs, ours = (statistics.median(v) for v in times.values())
    print(f"=> kernelwire's manager: {theirs / ours:.2f}x ({theirs - ours:+.2f} s)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    nb = trivial_notebook(CELLS)
    rounds = 2 if args.quick else 7
    report(
        f"One {CELLS}-cell notebook, kernel start and shutdown included:", measure(nb, rounds, 1)
    )
    report(
        f"{BATCH} such notebooks one after the other:",
        measure(nb, max(2, rounds - 2), BATCH),
    )


if __name__ == "__main__":
    main()
