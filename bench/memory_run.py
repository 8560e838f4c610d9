"""Peak client memory of ``Kernel.run(max_output_chars=...)`` on a large streamed output.

The kernel writes ``--mib`` MiB to stdout in flushed 1 MiB chunks; ``run()`` with a cap
of 10,000 characters should hold about the cap, not the stream. Peak resident memory of
this process is sampled every 10 ms while the cell runs, and printed next to the RSS
before that run and before the first one (memory freed after a run is not always given
back to the system, so later runs start higher).

    python bench/memory_run.py [--mib 256] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kernelwire import start_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_faults import PeakRss, rss_mb  # the suite's sampler: one of it

FLOOD = """
import sys
chunk = "x" * (1024 * 1024)
for _ in range({mib}):
    sys.stdout.write(chunk)
    sys.stdout.flush()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB the kernel streams")
    parser.add_argument("--cap", type=int, default=10_000, help="max_output_chars")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of 64 MiB")
    args = parser.parse_args()
    mib, runs = (64, 1) if args.quick else (args.mib, args.runs)
    with start_kernel("python3") as kernel:
        kernel.run("1")  # the run client is connected and warm before measuring
        print(f"run(max_output_chars={args.cap}) of {mib} MiB in flushed 1 MiB chunks")
        start = rss_mb()
        print(f"RSS before the first run: {start:.0f} MiB")
        print(
            f"{'run':<6}{'base MiB':>10}{'peak MiB':>10}{'growth MiB':>12}"
            f"{'over start':>12}{'kept chars':>12}{'seconds':>9}"
        )
        for index in range(runs):
            started = time.perf_counter()
            with PeakRss() as memory:
                result = kernel.run(FLOOD.format(mib=mib), max_output_chars=args.cap, timeout=600)
            elapsed = time.perf_counter() - started
            kept = sum(len(o.get("text", "")) for o in result.outputs)
            print(
                f"{index + 1:<6}{memory.base:>10.0f}{memory.peak:>10.0f}"
                f"{memory.peak - memory.base:>12.0f}{memory.peak - start:>12.0f}"
                f"{kept:>12}{elapsed:>9.1f}"
            )


if __name__ == "__main__":
    main()
