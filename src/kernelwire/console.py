"""``kernelwire console``: an interactive prompt on a kernel, as jupyter_console gives.

Built on prompt_toolkit: Tab completes from the kernel's ``complete_request``; Enter
runs the code when the kernel's ``is_complete_request`` says it is complete, and
otherwise starts a new line with the indent the kernel suggests (an empty last line
runs it anyway); ``name?`` and ``name??`` show the kernel's ``inspect_request`` answer;
``input()`` in the code is answered from the terminal; Ctrl-C interrupts the running
code (at the prompt, it clears the line); Ctrl-D at an empty prompt leaves. History is
kept in a file across sessions.

>>> from kernelwire.console import Console                  # doctest: +SKIP
>>> with start_kernel("python3") as kernel:                  # doctest: +SKIP
...     Console(kernel, history_file="~/.kernelwire_history").run()
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Protocol

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from .client._hooks import make_stdin_hook, print_output, terminal_stdin
from .client.blocking import BlockingKernelClient
from .errors import KernelTimeout, KernelwireError
from .protocol import requests
from .protocol.message import Message

ANSWER_TIMEOUT = 5.0
"""How long completion, ``is_complete`` and inspection wait for the kernel (a kernel
busy elsewhere must not freeze the prompt)."""


SIGNAL_SLICE = 0.2
"""How often, in seconds, a wait for running code looks for Ctrl-C."""


class Interruptible(Protocol):
    """A kernel the console runs code on: its client, and a way to interrupt it."""

    def client(self) -> BlockingKernelClient:
        """A connected client."""
        ...

    def interrupt(self) -> None:
        """Interrupt the running code."""
        ...


class KernelCompleter(Completer):
    """Completions from the kernel's ``complete_reply`` for the text before the cursor."""

    def __init__(self, client: BlockingKernelClient) -> None:
        self.client = client

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        """The kernel's matches, each replacing the text between its cursor_start and
        the cursor (nothing when the kernel does not answer in time)."""
        code, cursor = document.text, document.cursor_position
        try:
            reply = self.client.complete(code, cursor, reply=True, timeout=ANSWER_TIMEOUT)
        except KernelTimeout:
            return
        content = reply["content"]
        if content.get("status") != "ok":
            return
        start = content.get("cursor_start", cursor)
        end = content.get("cursor_end", cursor)
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start <= cursor:
            return
        for match in content.get("matches", []):
            if isinstance(match, str):
                yield Completion(match, start_position=start - cursor)


class Console:
    """An interactive prompt on ``kernel`` (see the module's docstring)."""

    def __init__(self, kernel: Interruptible, history_file: str | None = None) -> None:
        self.kernel = kernel
        self.client = kernel.client()
        self.count = 1
        history: History = InMemoryHistory()
        if history_file:
            path = os.path.expanduser(history_file)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            history = FileHistory(path)
        self.session: PromptSession[str] = PromptSession(
            history=history,
            completer=KernelCompleter(self.client),
            complete_while_typing=False,  # a request per key press would lag the typing
            key_bindings=self._key_bindings(),
            multiline=True,  # Enter is decided by the kernel's is_complete (below)
        )
        self.color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def _key_bindings(self) -> KeyBindings:
        bindings = KeyBindings()

        @bindings.add("enter")
        def _(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            document = buffer.document
            if not document.is_cursor_at_the_end:  # editing inside a block
                buffer.insert_text("\n")
                return
            # An empty last line after others runs the block whatever the kernel says.
            done = "\n" in document.text and not document.current_line.strip()
            status, indent = ("complete", "") if done else self._completeness(document.text)
            if status == "incomplete":
                buffer.insert_text("\n" + indent)
            else:
                buffer.validate_and_handle()

        return bindings

    def _completeness(self, text: str) -> tuple[str, str]:
        """The kernel's ``is_complete`` status for ``text`` and the indent it suggests
        (``unknown`` if it does not answer in time)."""
        if not text.strip():
            return "complete", ""
        try:
            reply = self.client.is_complete(text, reply=True, timeout=ANSWER_TIMEOUT)
        except KernelTimeout:
            return "unknown", ""
        status = reply["content"].get("status")
        indent = reply["content"].get("indent", "")
        return str(status), indent if isinstance(indent, str) else ""

    def run(self) -> int:
        """Prompt and run until Ctrl-D (or ``exit``/``quit``); 0."""
        while True:
            try:
                code = self.session.prompt(f"In [{self.count}]: ")
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line
                continue
            except EOFError:  # Ctrl-D
                return 0
            if not code.strip():
                continue
            if code.strip() in ("exit", "quit", "exit()", "quit()"):
                return 0
            stripped = code.strip()
            if stripped.endswith("?") and "\n" not in stripped:
                self.inspect(stripped)
            else:
                self.execute(code)

    def inspect(self, text: str) -> None:
        """``name?`` (``name??``: more detail): what the kernel says about ``name``."""
        name = text.rstrip("?")
        detail = 1 if text.endswith("??") else 0
        try:
            reply = self.client.inspect(name, len(name), detail, reply=True, timeout=ANSWER_TIMEOUT)
        except KernelTimeout:
            print("kernelwire: the kernel did not answer the inspection", file=sys.stderr)
            return
        content = reply["content"]
        data = content.get("data") if content.get("found") else None
        text_shown = data.get("text/plain") if isinstance(data, dict) else None
        print(text_shown if isinstance(text_shown, str) else f"Object `{name}` not found.")

    def execute(self, code: str) -> None:
        """Run ``code``, showing what it prints and returns; Ctrl-C interrupts it."""
        pending = self.client.submit(requests.execute(code, allow_stdin=True))

        def show(msg: Message) -> None:
            if msg["msg_type"] == "execute_result":
                count = msg["content"].get("execution_count")
                print(f"Out[{count}]: ", end="", flush=True)
            print_output(msg, color=self.color)

        ask = make_stdin_hook(self.client.input, terminal_stdin)
        reply: Message | None = None
        while reply is None:
            try:
                # In slices: Ctrl-C's SIGINT may land on another of the process's
                # threads, and Python runs its handler only once the main thread is
                # back in Python code; a wait with no limit could hold it off until
                # the code ends.
                reply = pending.wait(SIGNAL_SLICE, output_hook=show, stdin_hook=ask)
            except KernelTimeout:
                continue
            except KeyboardInterrupt:
                try:
                    self.kernel.interrupt()
                except KernelwireError as exc:
                    print(f"kernelwire: could not interrupt the kernel: {exc}", file=sys.stderr)
        content = reply["content"]
        for payload in content.get("payload", []) or []:
            if isinstance(payload, dict) and payload.get("source") == "page":
                page = payload.get("data", {}).get("text/plain")
                if isinstance(page, str):
                    print(page)
        count = content.get("execution_count")
        if isinstance(count, int):
            self.count = count + 1
