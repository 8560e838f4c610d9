"""Default output and stdin hooks for ``execute_interactive``."""

from __future__ import annotations

import getpass
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..protocol.message import Message


def _ipython_display_publisher() -> Any:
    """IPython's display publisher when running inside an IPython kernel, else None."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return None
    shell = ipython_module.get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    return shell.display_pub


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI colour escapes (IPython colours its tracebacks)."""
    return _ANSI.sub("", text)


def print_output(msg: Message, color: bool = True, *, out: TextIO | None = None) -> None:
    """Show one IOPub message the way a terminal front end would.

    Streams go to ``sys.stdout`` / ``sys.stderr``, results and displays as
    ``text/plain`` (or through IPython's display system inside a kernel), errors as
    their traceback on ``sys.stderr`` (without colours unless ``color``). ``out``
    replaces ``sys.stdout`` (e.g. ``sys.stderr``, for a log beside other output).
    """
    msg_type = msg["msg_type"]
    content = msg["content"]
    if msg_type == "stream":
        stream = sys.stderr if content.get("name") == "stderr" else out or sys.stdout
        stream.write(content.get("text", ""))
        stream.flush()
    elif msg_type in ("display_data", "execute_result", "update_display_data"):
        publisher = _ipython_display_publisher()
        if publisher is not None:
            publisher.publish(content.get("data", {}), content.get("metadata", {}))
        else:
            text = content.get("data", {}).get("text/plain")
            if text is not None:
                print(text, file=out or sys.stdout, flush=True)
    elif msg_type == "error":
        lines = content.get("traceback", [])
        text = "\n".join(lines if color else map(strip_ansi, lines))
        print(text, file=sys.stderr, flush=True)


def terminal_stdin(prompt: str, password: bool) -> str:
    """Ask the terminal user for input (hidden when ``password``)."""
    return getpass.getpass(prompt) if password else input(prompt)


def make_stdin_hook(
    reply: Callable[[str], None], ask: Callable[[str, bool], str]
) -> Callable[[Message], None]:
    """A stdin hook that answers each ``input_request`` with ``ask(prompt, password)``."""

    def hook(msg: Message) -> None:
        if msg["msg_type"] != "input_request":
            return
        content = msg["content"]
        try:
            value = ask(content.get("prompt", ""), bool(content.get("password", False)))
        except (EOFError, KeyboardInterrupt):
            value = ""
        reply(value)

    return hook
