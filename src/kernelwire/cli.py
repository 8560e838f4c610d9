"""The ``kernelwire`` command line.

``kernelwire run -c CODE`` (or ``FILE``, or ``-`` for stdin) starts an IPython
kernel, runs the code, prints its streams, results and errors, and exits 1 if the
code raised.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .client.blocking import BlockingKernelClient
from .errors import KernelwireError
from .kernel_process import run_kernel_in_process
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
