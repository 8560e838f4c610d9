"""The ``kernelwire`` command line.

``kernelwire run [-k KERNEL] -c CODE`` (or ``FILE``, or ``-`` for stdin) starts a
kernel, runs the code, prints its streams, results and errors, and exits 1 if the code
raised. ``kernelwire notebook run IN.ipynb`` executes a notebook with a progress bar.
``kernelwire kernels`` lists kernel specs; ``kernelwire start`` starts a kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import nbformat
import orjson

from . import __version__
from .client._hooks import print_output, strip_ansi
from .errors import CellExecutionError, ExecutionError, KernelTimeout, KernelwireError
from .lifecycle.kernel import Kernel, start_kernel
from .lifecycle.specs import get_kernel_spec, list_kernel_specs
from .protocol import requests
from .remote import RemoteKernel, connect_server


def _read_code(args: argparse.Namespace) -> str:
    if args.code is not None:
        return str(args.code)
    if args.file in (None, "-"):
        return sys.stdin.read()
    try:
        with open(args.file, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise SystemExit(f"kernelwire: cannot read {args.file}: {exc.strerror or exc}") from None


def run_command(args: argparse.Namespace) -> int:
    """``kernelwire run``: run code on a fresh kernel; 0 if it succeeded, 1 if it raised."""
    code = _read_code(args)
    show = partial(print_output, color=sys.stderr.isatty())
    kernel: Kernel | RemoteKernel
    with _kernel_for(args) as kernel:
        client = kernel.client()
        pending = client.submit(requests.execute(code, allow_stdin=False))
        try:
            reply = pending.wait(args.timeout, output_hook=show)
        except KernelTimeout:
            kernel.interrupt()
            print(f"kernelwire: the code did not finish within {args.timeout:g} s", file=sys.stderr)
            return 1
    return 0 if reply["content"].get("status") == "ok" else 1


@contextmanager
def _kernel_for(args: argparse.Namespace) -> Iterator[Kernel | RemoteKernel]:
    """A kernel of spec ``args.kernel``: local, or on ``args.server`` when given."""
    if args.server:
        token = args.token or os.environ.get("JUPYTER_TOKEN")
        with (
            connect_server(args.server, token) as server,
            server.start_kernel(args.kernel) as remote,
        ):
            yield remote
    else:
        with start_kernel(args.kernel) as local:
            yield local


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def notebook_run_command(args: argparse.Namespace) -> int:
    """``kernelwire notebook run``: execute notebooks and write the results.

    Several notebooks run one after another (``--jobs`` at once), each on its own
    kernel; the next one's kernel starts while the current one runs. Exit status: 0 if
    every notebook ran, 1 if a cell failed or timed out, 2 if a notebook could not be
    read or its kernel could not be started.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import notebook

    sources = [Path(p) for p in args.notebooks]
    if args.output and len(sources) > 1:
        print("kernelwire: -o/--output takes one notebook; give one, or omit -o", file=sys.stderr)
        return 2
    prepared = [notebook.prepare(source) for source in sources]  # read once, here
    for run in prepared:
        if run.error is not None:
            raise run.error  # a missing or broken file is an error before anything runs
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    server = (
        connect_server(args.server, args.token or os.environ.get("JUPYTER_TOKEN"))
        if args.server
        else None
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        # A notebook's hooks all come on one thread; with --jobs, notebooks run on several.
        current = threading.local()

        def notebook_started(index: int, run: notebook.NotebookRun) -> None:
            cells = [c for c in run.notebook.cells if c.cell_type == "code"] if run.notebook else []
            current.task = progress.add_task(sources[index].name, total=len(cells))

        def cell_started(index: int, cell: Any) -> None:
            first_line = (cell.source.strip().splitlines() or [""])[0][:40]
            progress.update(current.task, description=f"cell {index}: {first_line}")

        def cell_done(index: int, cell: Any) -> None:
            progress.advance(current.task)

        def notebook_done(index: int, run: notebook.NotebookRun) -> None:
            outcome = "done" if run.ok else "failed"
            progress.update(current.task, description=f"{sources[index].name}: {outcome}")

        runs = notebook.execute_many(
            prepared,
            kernel_name=args.kernel,
            server=server,
            timeout=args.timeout,
            allow_errors=args.allow_errors,
            jobs=args.jobs,
            max_output_chars=args.max_output,
            on_notebook_start=notebook_started,
            on_notebook_done=notebook_done,
            on_cell_start=cell_started,
            on_cell_done=cell_done,
        )
    status = 0
    for source, run in zip(sources, runs, strict=True):
        target = Path(args.output) if args.output else source.with_suffix(".executed.ipynb")
        failure = run.error
        if failure is not None and not isinstance(failure, (CellExecutionError, KernelTimeout)):
            prefix = f"{source}: " if len(sources) > 1 else ""
            print(f"kernelwire: {prefix}{failure}", file=sys.stderr)
            status = 2
            continue
        assert run.notebook is not None  # read above
        nbformat.write(run.notebook, str(target))  # type: ignore[no-untyped-call]
        if failure is not None:
            if isinstance(failure, ExecutionError):
                print("\n".join(strip_ansi(line) for line in failure.traceback), file=sys.stderr)
            print(
                f"kernelwire: {source}: {failure} (partial notebook written to {target})",
                file=sys.stderr,
            )
            status = max(status, 1)
            continue
        cells = len([c for c in run.notebook.cells if c.cell_type == "code"])
        print(f"Executed {cells} code cells of {source}; wrote {target}")
    return status


def kernels_command(args: argparse.Namespace) -> int:
    """``kernelwire kernels``: list installed kernel specs."""
    specs = list_kernel_specs()
    if args.json:
        print(
            orjson.dumps(
                {n: s.to_dict() for n, s in specs.items()}, option=orjson.OPT_INDENT_2
            ).decode()
        )
        return 0
    width = max((len(name) for name in specs), default=4)
    for name, spec in sorted(specs.items()):
        print(f"{name:<{width}}  {spec.display_name}  ({spec.language}, {spec.resource_dir})")
    return 0


def start_command(args: argparse.Namespace) -> int:
    """``kernelwire start``: start a kernel and keep it running until Ctrl-C.

    The kernel is meant for other tools (``jupyter console --existing``, qtconsole),
    which do not pass a connection file's CurveZMQ keys on: it gets Curve only with
    ``--encrypt``.
    """
    kernel = Kernel(get_kernel_spec(args.kernel), encrypt=args.encrypt)
    if args.connection_file:
        kernel.connection_file = os.path.abspath(args.connection_file)
    try:
        kernel.start()
        print(f"Started kernel {args.kernel} (pid {kernel.pid}).", flush=True)
        print(f"Connect with: --existing {kernel.connection_file}", flush=True)
        print(f"  BlockingKernelClient({kernel.connection_file!r})", flush=True)
        print("Press Ctrl-C to shut it down.", flush=True)
        while kernel.is_alive():
            time.sleep(0.5)
        print(f"kernelwire: the kernel exited with code {kernel.exit_code}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Shutting down the kernel.", flush=True)
        return 0
    finally:
        kernel.shutdown()


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="run on this Jupyter Server or Gateway URL instead")
    parser.add_argument("--token", help="the server's token (default: $JUPYTER_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kernelwire`` command."""
    parser = argparse.ArgumentParser(prog="kernelwire", description="Talk to Jupyter kernels.")
    parser.add_argument("--version", action="version", version=f"kernelwire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run code on a new kernel and print what it shows")
    run.add_argument("-k", "--kernel", default="python3", help="kernel spec (default: python3)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("-c", "--code", help="the code to run")
    source.add_argument("file", nargs="?", help="a file of code to run, or - for stdin")
    run.add_argument("--timeout", type=float, default=None, help="seconds to allow (default: none)")
    _server_options(run)
    run.set_defaults(handler=run_command)
    notebook = commands.add_parser("notebook", help="work with notebooks")
    notebook_commands = notebook.add_subparsers(dest="notebook_command", required=True)
    nb_run = notebook_commands.add_parser(
        "run",
        help="execute notebooks and write the results",
        description="Execute notebooks, each on a kernel of its own, in its own directory; "
        "the next notebook's kernel starts while the current one runs. With --jobs N, "
        "N notebooks run at once.",
    )
    nb_run.add_argument("notebooks", nargs="+", help="the notebooks to execute (.ipynb)")
    nb_run.add_argument(
        "-o", "--output", help="where to write it, for one notebook (default: NAME.executed.ipynb)"
    )
    nb_run.add_argument("-k", "--kernel", default=None, help="kernel (default: the notebook's)")
    nb_run.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell")
    nb_run.add_argument("--allow-errors", action="store_true", help="keep going when a cell raises")
    nb_run.add_argument(
        "--max-output",
        type=_positive_int,
        default=None,
        metavar="CHARS",
        help="keep at most CHARS characters of text output per cell (default: all)",
    )
    nb_run.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=1,
        help="how many notebooks run at once (default: 1)",
    )
    _server_options(nb_run)
    nb_run.set_defaults(handler=notebook_run_command)
    kernels = commands.add_parser("kernels", help="list installed kernel specs")
    kernels.add_argument("--json", action="store_true", help="print the specs as JSON")
    kernels.set_defaults(handler=kernels_command)
    start = commands.add_parser("start", help="start a kernel and print how to connect to it")
    start.add_argument(
        "-k", "--kernel", default="python3", help="kernel spec name (default: python3)"
    )
    start.add_argument("--connection-file", help="where to write the connection file")
    start.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the channels with CurveZMQ (kernelwire's clients can use such a "
        "kernel; jupyter console and qtconsole cannot)",
    )
    start.set_defaults(handler=start_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kernelwire`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KernelwireError as exc:
        print(f"kernelwire: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
