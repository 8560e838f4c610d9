"""The ``kernelwire`` command line.

``kernelwire run -c CODE`` (or ``FILE``, or ``-`` for stdin) starts an IPython
kernel, runs the code, prints its streams, results and errors, and exits 1 if the
code raised.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import orjson

from . import __version__
from .client.blocking import BlockingKernelClient
from .errors import KernelwireError
from .kernel_process import run_kernel_in_process
from .lifecycle.kernel import Kernel
from .lifecycle.specs import get_kernel_spec, list_kernel_specs
from .protocol import requests
from .protocol.message import Message


def _print_output(msg: Message) -> None:
    msg_type = msg["msg_type"]
    content = msg["content"]
    if msg_type == "stream":
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        stream.write(content.get("text", ""))
        stream.flush()
    elif msg_type in ("execute_result", "display_data"):
        text = content.get("data", {}).get("text/plain")
        if text is not None:
            print(text, flush=True)
    elif msg_type == "error":
        print("\n".join(content.get("traceback", [])), file=sys.stderr, flush=True)


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
    with run_kernel_in_process() as kernel, BlockingKernelClient(kernel.connection_file) as client:
        client.wait_for_ready(args.timeout)
        pending = client.submit(requests.execute(code, allow_stdin=False))
        reply = pending.wait(args.timeout, output_hook=_print_output)
    return 0 if reply["content"].get("status") == "ok" else 1


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
    """``kernelwire start``: start a kernel and keep it running until Ctrl-C."""
    kernel = Kernel(get_kernel_spec(args.kernel))
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kernelwire`` command."""
    parser = argparse.ArgumentParser(prog="kernelwire", description="Talk to Jupyter kernels.")
    parser.add_argument("--version", action="version", version=f"kernelwire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run code on a new IPython kernel and print what it shows"
    )
    source = run.add_mutually_exclusive_group()
    source.add_argument("-c", "--code", help="the code to run")
    source.add_argument("file", nargs="?", help="a file of code to run, or - for stdin")
    run.add_argument("--timeout", type=float, default=None, help="seconds to allow (default: none)")
    run.set_defaults(handler=run_command)
    kernels = commands.add_parser("kernels", help="list installed kernel specs")
    kernels.add_argument("--json", action="store_true", help="print the specs as JSON")
    kernels.set_defaults(handler=kernels_command)
    start = commands.add_parser("start", help="start a kernel and print how to connect to it")
    start.add_argument(
        "-k", "--kernel", default="python3", help="kernel spec name (default: python3)"
    )
    start.add_argument("--connection-file", help="where to write the connection file")
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
