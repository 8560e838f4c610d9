"""Start-up cost of a program that uses kernelwire, against one using jupyter_client.

Each row runs a fresh Python process, alternating kernelwire and jupyter_client, and
reports the median wall time of ``--n`` runs:

- ``import``: ``import kernelwire`` / ``import jupyter_client``;
- ``run -c 1``: the README's main job, ``kernelwire run -c 1`` (kernel start, one
  execution, shutdown), against a jupyter_client script doing the same
  (``start_new_kernel``, ``execute_interactive("1")``, ``shutdown_kernel``);
- ``notebook run``: a 3-cell notebook executed and written, ``kernelwire notebook run``
  against ``jupyter execute --output`` (nbclient).

    python bench/startup.py            # 7 runs per row
    python bench/startup.py --quick    # 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JUPYTER_CLIENT_RUN = """
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="python3")
kc.execute_interactive("1", timeout=60)
kc.stop_channels()
km.shutdown_kernel(now=True)
"""

KERNELWIRE = shutil.which("kernelwire") or "kernelwire"
JUPYTER = shutil.which("jupyter") or "jupyter"
WORK = Path(tempfile.mkdtemp(prefix="kernelwire-bench-"))
NOTEBOOK = WORK / "three.ipynb"
NOTEBOOK.write_text(
    '{"cells": ['
    + ", ".join(
        f'{{"cell_type": "code", "metadata": {{}}, "source": "{code}", "outputs": [], '
        '"execution_count": null}'
        for code in ("x = 1", "print(x)", "x + 1")
    )
    + '], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",'
    ' "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}'
)

ROWS = {
    "import": (
        [sys.executable, "-c", "import kernelwire"],
        [sys.executable, "-c", "import jupyter_client"],
    ),
    "run -c 1 (start, run, shut down)": (
        [KERNELWIRE, "run", "-c", "1"],
        [sys.executable, "-c", JUPYTER_CLIENT_RUN],
    ),
    "notebook run (3 cells, written)": (
        [KERNELWIRE, "notebook", "run", str(NOTEBOOK), "-o", str(WORK / "ours.ipynb")],
        [JUPYTER, "execute", str(NOTEBOOK), "--output", str(WORK / "theirs.ipynb")],
    ),
}


def wall(argv: list[str]) -> float:
    """Seconds one process takes from start to exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    """Run every row, alternating the two sides, and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=7, help="runs per row and side")
    parser.add_argument("--quick", action="store_true", help="3 runs per row and side")
    args = parser.parse_args()
    n = 3 if args.quick else args.n
    print(f"{'':<36}{'kernelwire s':>14}{'jupyter_client s':>18}{'ratio':>8}")
    for name, (ours, theirs) in ROWS.items():
        wall(ours), wall(theirs)  # warm the file cache
        times: tuple[list[float], list[float]] = ([], [])
        for i in range(n):
            pair = ((0, ours), (1, theirs)) if i % 2 == 0 else ((1, theirs), (0, ours))
            for side, argv in pair:
                times[side].append(wall(argv))
        a, b = statistics.median(times[0]), statistics.median(times[1])
        print(f"{name:<36}{a:>14.3f}{b:>18.3f}{a / b:>7.2f}x")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
