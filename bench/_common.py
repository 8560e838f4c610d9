"""Shared helpers of the benchmark scripts: statistics and table printing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(rows: dict[str, Sequence[float]], unit: str, scale: float) -> None:
    """Print median, p99 and count per row, in ``unit`` (values are multiplied by ``scale``)."""
    print(f"{'':<34}{'median ' + unit:>14}{'p99 ' + unit:>12}{'n':>8}")
    for name, values in rows.items():
        scaled = [v * scale for v in values]
        print(
            f"{name:<34}{statistics.median(scaled):>14.2f}"
            f"{percentile(scaled, 0.99):>12.2f}{len(scaled):>8}"
        )


def timed(run: Callable[[], None], n: int, out: list[float]) -> None:
    """Run ``run`` ``n`` times (after 5 untimed warm-up runs), appending seconds per run."""
    for _ in range(5):
        run()
    for _ in range(n):
        started = time.perf_counter()
        run()
        out.append(time.perf_counter() - started)
