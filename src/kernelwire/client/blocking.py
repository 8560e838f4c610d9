"""The blocking client: jupyter_client's ``BlockingKernelClient`` API, without its pains.

>>> client = BlockingKernelClient()                     # doctest: +SKIP
>>> client.load_connection_file("kernel-1234.json")      # doctest: +SKIP
>>> client.start_channels()                              # doctest: +SKIP
>>> client.execute_interactive("print('hi')")            # doctest: +SKIP
hi

It is a real blocking implementation (no event loop underneath), so it works
inside a running asyncio loop, e.g. in a notebook cell, without nest_asyncio. Every
algorithm that waits is written once (in :mod:`~kernelwire.client.base` and
:mod:`~kernelwire.client._pending`); :func:`run_steps` and :func:`iterate_steps` perform
its waits by pumping on the calling thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, TypeVar

from ..protocol.message import Channel, Message
from ..protocol.requests import Request
from ._engine import BlockingEngine
from ._pending import PendingBase
from ._steps import NOTHING, Done, Emit, Outcome, Settle, Step, Steps, Wait, advance, time_left
from .base import ALL_CLAIMS, ChannelBase, ChannelOf, HeartbeatChannel, KernelClientBase

Hook = Callable[[Message], None]
T = TypeVar("T")

__all__ = [
    "BlockingChannel",
    "BlockingKernelClient",
    "HeartbeatChannel",
    "PendingRequest",
    "iterate_steps",
    "run_steps",
]


def run_steps(engine: BlockingEngine | None, steps: Steps[T]) -> T:
    """Run an algorithm's steps, waiting by pumping ``engine``; its result."""
    outcome = NOTHING
    with contextlib.closing(steps):  # an interrupted algorithm's cleanup runs now
        while not isinstance(step := advance(steps, *outcome), Done):
            outcome = _outcome(engine, step)
    return step.value


def iterate_steps(engine: BlockingEngine, steps: Steps[Any]) -> Iterator[Any]:
    """Run an algorithm's steps, yielding what it emits; closes it if left early."""
    outcome = NOTHING
    with contextlib.closing(steps):
        while not isinstance(step := advance(steps, *outcome), Done):
            outcome = yield from _perform(engine, step)


def _perform(engine: BlockingEngine, step: Step) -> Generator[Any, None, Outcome]:
    if not isinstance(step, Emit):
        return _outcome(engine, step)
    yield step.value
    return NOTHING


def _outcome(engine: BlockingEngine | None, step: Step) -> Outcome:
    """Wait as ``step`` says (a :class:`Settle` needs no wait here): its outcome."""
    try:
        if isinstance(step, Settle):
            return step.value, None
        assert engine is not None and isinstance(step, Wait)
        return engine.wait_for(step.predicate, step.timeout), None
    except Exception as exc:  # the algorithm's to handle: thrown into it
        return None, exc


class PendingRequest(PendingBase[BlockingEngine]):
    """A sent request and everything the kernel sends back for it.

    Iterate to get ``(channel, message)`` pairs in arrival order, up to the reply and
    the IOPub ``status: idle``; or call :meth:`reply`, :meth:`iopub`, :meth:`wait`.
    """

    def __init__(self, client: BlockingKernelClient, msg: Message, state: Any) -> None:
        super().__init__(client.engine, msg, state)
        self.client = client

    def reply(self, timeout: float | None = None) -> Message:
        """The ``*_reply`` message.

        Raises :class:`KernelTimeout` or :class:`KernelDied` if it does not come.
        """
        return run_steps(self._engine, self._reply_steps(timeout))

    def events(self, timeout: float | None = None) -> Iterator[tuple[Channel, Message]]:
        """``(channel, message)`` pairs as they arrive, until done; ``timeout`` bounds the whole."""
        # The hot path of every round trip: one wait per event, no steps to run.
        left, next_event, wait_for = time_left(timeout), self._next_event(), self._engine.wait_for
        while (event := wait_for(next_event, left())) is not False:
            yield event  # type: ignore[misc]  # mypy joins the predicate's union to object
        self.close()

    __iter__ = events

    def iopub(self, timeout: float | None = None) -> Iterator[Message]:
        """This request's IOPub messages, up to and including ``status: idle``."""
        return (msg for channel, msg in self.events(timeout) if channel == "iopub")

    def wait(
        self,
        timeout: float | None = None,
        output_hook: Hook | None = None,
        stdin_hook: Hook | None = None,
    ) -> Message:
        """Consume everything and return the reply.

        IOPub messages go to ``output_hook``, stdin requests to ``stdin_hook``.
        """
        return run_steps(self._engine, self._wait_steps(timeout, output_hook, stdin_hook))


class BlockingChannel(ChannelBase):
    """One channel of a blocking client, with jupyter_client's channel methods."""

    client: BlockingKernelClient

    def get_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed message.

        Raises ``queue.Empty`` after ``timeout`` (at once if not ``block``).
        """
        return self.client._get_unclaimed(self.name, timeout if block else 0.0)

    def get_msgs(self) -> list[Message]:
        """Every unclaimed message available now."""
        return self.client._run(self._all_steps())

    def msg_ready(self) -> bool:
        """Whether an unclaimed message is waiting."""
        return self.client._run(self._ready_steps())


class BlockingKernelClient(KernelClientBase[BlockingEngine, Message]):
    """A blocking client for one kernel, with jupyter_client's method names.

    Request methods return the request's ``msg_id``; with ``reply=True`` they wait
    for and return the reply. Replies and outputs nobody waits for stay available
    to ``get_shell_msg()``, ``get_iopub_msg()``, etc. :meth:`submit` gives a
    :class:`PendingRequest` that receives exactly that request's messages.
    """

    _engine_class = BlockingEngine

    def __enter__(self) -> BlockingKernelClient:
        if self._engine is None:
            self.start_channels()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_channels()

    def _run(self, steps: Steps[T]) -> T:
        return run_steps(self._engine, steps)

    def _get_unclaimed(self, channel: Channel, timeout: float | None) -> Message:
        msg = self._take_now(channel)
        return msg if msg is not None else self._run(self._unclaimed_steps(channel, timeout))

    # -- channels ----------------------------------------------------------------
    shell_channel = ChannelOf(BlockingChannel, "shell")
    iopub_channel = ChannelOf(BlockingChannel, "iopub")
    stdin_channel = ChannelOf(BlockingChannel, "stdin")
    control_channel = ChannelOf(BlockingChannel, "control")

    def get_shell_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed shell message (``queue.Empty`` on timeout)."""
        return self._get_unclaimed("shell", timeout if block else 0.0)

    def get_iopub_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed IOPub message (``queue.Empty`` on timeout)."""
        return self._get_unclaimed("iopub", timeout if block else 0.0)

    def get_stdin_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed stdin message (``queue.Empty`` on timeout)."""
        return self._get_unclaimed("stdin", timeout if block else 0.0)

    def get_control_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed control message (``queue.Empty`` on timeout)."""
        return self._get_unclaimed("control", timeout if block else 0.0)

    # -- liveness ----------------------------------------------------------------
    def is_alive(self) -> bool:
        """Whether the kernel answers its heartbeat (waits up to ``time_to_dead`` for a pong)."""
        return self._run(self._alive_steps())

    def wait_for_ready(self, timeout: float | None = None) -> Message:
        """Wait until the kernel answers ``kernel_info`` and IOPub is connected; return the reply.

        IOPub counts as connected when the kernel's ``iopub_welcome`` (protocol 5.5)
        has arrived, or else when a status message for our request has.
        """
        return self._run(self._ready_steps(timeout))

    # -- requests ------------------------------------------------------------------
    def submit(
        self,
        request: Request,
        *,
        claims: frozenset[Channel] = ALL_CLAIMS,
        on_iopub: Callable[[Message], object] | None = None,
    ) -> PendingRequest:
        """Send ``request`` and return a handle that receives exactly its messages.

        With ``on_iopub``, the request's IOPub messages go to it as they are read, and
        not to the handle: nothing of them is held in between. It runs on whichever
        thread reads the sockets, under the routing lock: it must be quick and must not
        wait on this client.
        """
        return self._submit(request, claims, PendingRequest, on_iopub)

    def _request(self, request: Request, reply: bool, timeout: float | None) -> str | Message:
        if not reply:
            return self._send_request(request)
        return self._run(self._reply_steps(request, timeout))

    def execute_interactive(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        timeout: float | None = None,
        output_hook: Hook | None = None,
        stdin_hook: Hook | None = None,
    ) -> Message:
        """Run ``code``, hand its IOPub messages to ``output_hook`` and stdin requests to
        ``stdin_hook``, and return the ``execute_reply``.

        The default hooks print outputs and ask the terminal for input. Messages of
        other requests are left for ``get_*_msg``. ``timeout`` bounds the whole run
        (:class:`KernelTimeout`, a ``TimeoutError``).
        """
        request = self._execute_request(
            code, silent, store_history, user_expressions, allow_stdin, stop_on_error
        )
        return self._run(self._interactive_steps(request, timeout, output_hook, stdin_hook))
