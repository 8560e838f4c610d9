"""Run nbclient's own test suite twice: on jupyter_client's managers, and with
kernelwire's in the manager seat; print the counts side by side.

    python scripts/nbclient_suite.py [--version 0.11.0] [--jobs 2] [--keep DIR]

The suite comes from nbclient's sdist (``pip download --no-binary :all:``), at the
installed nbclient's version unless ``--version`` says otherwise; it needs nbclient's
test extras (``pip install 'kernelwire[nbclient-suite]'``). The kernelwire copy differs
from the baseline in two ways, both "change the import":

- the test modules import ``KernelManager``/``AsyncKernelManager`` from
  ``kernelwire.manager`` instead of ``jupyter_client.manager``;
- its conftest makes ``jupyter_client.AsyncKernelManager`` (nbclient's default manager,
  looked up when a client starts) and ``jupyter_client.KernelManager`` kernelwire's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SEAT = """

# kernelwire in the manager seat (added by kernelwire's scripts/nbclient_suite.py)
import jupyter_client as _jupyter_client

import kernelwire.manager as _kernelwire_manager

_jupyter_client.AsyncKernelManager = _kernelwire_manager.AsyncKernelManager
_jupyter_client.KernelManager = _kernelwire_manager.KernelManager
"""

COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|warnings?)")


def fetch(version: str, into: Path) -> Path:
    """Download and unpack nbclient's sdist; the unpacked folder."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"nbclient=={version}",
            "-d",
            str(into),
        ],
        check=True,
    )
    archive = next(into.glob(f"nbclient-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / f"nbclient-{version}"


def kernelwire_copy(source: Path, target: Path) -> Path:
    """A copy of the sdist whose tests use kernelwire's managers."""
    shutil.copytree(source, target)
    for test in (target / "tests").glob("*.py"):
        text = test.read_text()
        swapped = text.replace(
            "from jupyter_client.manager import", "from kernelwire.manager import"
        )
        if test.name == "conftest.py":
            swapped += SEAT
        test.write_text(swapped)
    return target


def run(folder: Path, jobs: int) -> dict[str, int]:
    """Run the suite in ``folder`` (the installed nbclient is the one tested); its counts."""
    # The sdist's nbclient package would shadow the installed one only if it were first
    # on sys.path; both are the same version, so the tests run either way.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"]
    command += ["-p", "no:benchmark"]  # pytest-benchmark warns under xdist; warnings fail here
    command += ["--timeout", "300"]  # a hung test fails instead of stalling the run
    if jobs > 1:
        command += ["-n", str(jobs)]
    proc = subprocess.run(
        [*command, "tests"], cwd=folder, capture_output=True, text=True, env=dict(os.environ)
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    counts = {
        kind.rstrip("s") if kind.startswith("error") else kind: int(n)
        for n, kind in COUNT.findall(tail)
    }
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    print(f"--- {folder.name}: {tail}")
    for line in failed:
        print("   ", line[:200])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=importlib.metadata.version("nbclient"))
    parser.add_argument("--jobs", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--keep", help="unpack into this folder and keep it")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nbclient-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        baseline_dir = fetch(args.version, work)
        ours_dir = kernelwire_copy(baseline_dir, work / f"nbclient-{args.version}-kernelwire")
        baseline = run(baseline_dir, args.jobs)
        ours = run(ours_dir, args.jobs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"nbclient": args.version, "jupyter_client": baseline, "kernelwire": ours}))
    print(
        f"nbclient {args.version} test suite: jupyter_client's managers "
        f"{baseline.get('passed', 0)} passed, {baseline.get('failed', 0)} failed; "
        f"kernelwire's {ours.get('passed', 0)} passed, {ours.get('failed', 0)} failed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
