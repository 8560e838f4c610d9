"""The blocking client: jupyter_client's ``BlockingKernelClient`` API, without its pains.

>>> client = BlockingKernelClient()                     # doctest: +SKIP
>>> client.load_connection_file("kernel-1234.json")      # doctest: +SKIP
>>> client.start_channels()                              # doctest: +SKIP
>>> client.execute_interactive("print('hi')")            # doctest: +SKIP
hi

It is a real blocking implementation (no event loop underneath), so it works
inside a running asyncio loop, e.g. in a notebook cell, without nest_asyncio.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import KernelDied, KernelTimeout
from ..protocol import requests
from ..protocol.message import Channel, Message
from ..protocol.requests import Request
from .base import ALL_CLAIMS, REPLY_CLAIMS, KernelClientBase
from .engine import BlockingEngine, take_unclaimed
from .hooks import make_stdin_hook, print_output, terminal_stdin
from .pending import PendingBase
from .routing import RequestState, Sink, iopub_joined

Hook = Callable[[Message], None]


class PendingRequest(PendingBase[BlockingEngine]):
    """A sent request and everything the kernel sends back for it.

    Iterate to get ``(channel, message)`` pairs in arrival order, up to the reply and
    the IOPub ``status: idle``; or call :meth:`reply`, :meth:`iopub`, :meth:`wait`.
    """

    def __init__(self, client: BlockingKernelClient, msg: Message, state: RequestState) -> None:
        super().__init__(client.engine, msg, state)
        self.client = client

    def reply(self, timeout: float | None = None) -> Message:
        """The ``*_reply`` message.

        Raises :class:`KernelTimeout` or :class:`KernelDied` if it does not come.
        """
        return self._engine.wait_for(self._reply_ready(), timeout)

    def events(self, timeout: float | None = None) -> Iterator[tuple[Channel, Message]]:
        """``(channel, message)`` pairs as they arrive, until done; ``timeout`` bounds the whole."""
        deadline = None if timeout is None else time.monotonic() + timeout
        next_event = self._next_event()
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = self._engine.wait_for(next_event, remaining)
            if event is False:
                self.close()
                return
            yield event  # type: ignore[misc]

    __iter__ = events

    def iopub(self, timeout: float | None = None) -> Iterator[Message]:
        """This request's IOPub messages, up to and including ``status: idle``."""
        for channel, msg in self.events(timeout):
            if channel == "iopub":
                yield msg

    def wait(
        self,
        timeout: float | None = None,
        output_hook: Hook | None = None,
        stdin_hook: Hook | None = None,
    ) -> Message:
        """Consume everything and return the reply.

        IOPub messages go to ``output_hook``, stdin requests to ``stdin_hook``.
        """
        for channel, msg in self.events(timeout):
            if channel == "iopub" and output_hook is not None:
                output_hook(msg)
            elif channel == "stdin" and stdin_hook is not None:
                stdin_hook(msg)
        return self._final_reply()


class BlockingChannel:
    """One channel of a blocking client, with jupyter_client's channel methods."""

    def __init__(self, client: BlockingKernelClient, name: Channel) -> None:
        self.client = client
        self.name = name

    def get_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed message.

        Raises ``queue.Empty`` after ``timeout`` (at once if not ``block``).
        """
        return self.client._get_unclaimed(self.name, timeout if block else 0.0)

    def get_msgs(self) -> list[Message]:
        """Every unclaimed message available now."""
        out: list[Message] = []
        while True:
            try:
                out.append(self.get_msg(block=False))
            except queue.Empty:
                return out

    def msg_ready(self) -> bool:
        """Whether an unclaimed message is waiting."""
        engine = self.client.engine
        engine.watch(self.name)
        if engine.router.unclaimed[self.name]:
            return True
        try:
            engine.wait_for(lambda: True if engine.router.unclaimed[self.name] else None, 0.0)
        except KernelTimeout:
            return False
        return True

    def send(self, msg: Mapping[str, Any]) -> None:
        """Send a message you built (``client.session.message(...)``) on this channel."""
        self.client.send_message(self.name, msg)

    def is_alive(self) -> bool:
        """Whether the channel is open."""
        engine = self.client._engine
        return engine is not None and engine.has_channel(self.name)

    def start(self) -> None:
        """Channels start with the client; kept for jupyter_client compatibility."""

    def stop(self) -> None:
        """Channels stop with the client; kept for jupyter_client compatibility."""

    close = stop


class HeartbeatChannel:
    """The heartbeat channel: ``is_beating()``, ``pause()``, ``unpause()``."""

    def __init__(self, client: KernelClientBase[Any]) -> None:
        self.client = client

    @property
    def time_to_dead(self) -> float:
        """Seconds without a pong before the kernel counts as dead."""
        return self.client.time_to_dead

    def is_beating(self) -> bool:
        """Whether the last pong is recent and heartbeats are not paused."""
        engine = self.client._engine
        if engine is None or engine.heartbeat.paused or engine.router.death is not None:
            return False
        return bool(engine.heartbeat.beating(time.monotonic()))

    def is_alive(self) -> bool:
        """Whether the heartbeat channel is open."""
        engine = self.client._engine
        return engine is not None and engine.has_channel("hb")

    def pause(self) -> None:
        """Stop pinging (e.g. while the kernel restarts)."""
        self.client.engine.heartbeat.paused = True

    def unpause(self) -> None:
        """Resume pinging."""
        self.client.engine.heartbeat.paused = False

    def start(self) -> None:
        """Kept for jupyter_client compatibility."""

    def stop(self) -> None:
        """Kept for jupyter_client compatibility."""


class BlockingKernelClient(KernelClientBase[BlockingEngine]):
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

    # -- channels ----------------------------------------------------------------
    @property
    def shell_channel(self) -> BlockingChannel:
        """The shell channel."""
        return BlockingChannel(self, "shell")

    @property
    def iopub_channel(self) -> BlockingChannel:
        """The IOPub channel."""
        return BlockingChannel(self, "iopub")

    @property
    def stdin_channel(self) -> BlockingChannel:
        """The stdin channel."""
        return BlockingChannel(self, "stdin")

    @property
    def control_channel(self) -> BlockingChannel:
        """The control channel."""
        return BlockingChannel(self, "control")

    @property
    def hb_channel(self) -> HeartbeatChannel:
        """The heartbeat channel."""
        return HeartbeatChannel(self)

    def _get_unclaimed(self, channel: Channel, timeout: float | None) -> Message:
        engine = self.engine
        engine.watch(channel)
        queue_ = engine.router.unclaimed[channel]
        if queue_ and engine.router.unclaimed_sink is None:
            return queue_.popleft()  # fast path: deque.popleft is atomic
        try:
            return engine.wait_for(take_unclaimed(engine.router, channel), timeout)
        except KernelTimeout:
            raise queue.Empty from None

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
        engine = self._engine
        if engine is None:
            return False
        if not engine.has_channel("hb"):
            return engine.router.death is None
        heartbeat = engine.heartbeat
        if heartbeat.beating(time.monotonic()):
            return engine.router.death is None

        def answered() -> bool | None:
            if engine.router.death is not None:
                return False
            return True if heartbeat.beating(time.monotonic()) else None

        try:
            return engine.wait_for(answered, self.time_to_dead)
        except KernelTimeout:
            return False

    def wait_for_ready(self, timeout: float | None = None) -> Message:
        """Wait until the kernel answers ``kernel_info`` and IOPub is connected; return the reply.

        IOPub counts as connected when the kernel's ``iopub_welcome`` (protocol 5.5)
        has arrived, or else when a status message for our request has.
        """
        if self._engine is None:
            self.start_channels()
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        router = self.engine.router
        probes: list[PendingRequest] = []
        try:
            while True:
                self.engine.join_iopub()
                welcomed_before = router.iopub_welcomed
                probe = self.submit(requests.kernel_info())
                probes.append(probe)
                reply = probe.reply(left())
                if not self.engine.has_channel("iopub"):
                    return reply
                state = probe._state
                if not welcomed_before:
                    # Our statuses may have gone out before IOPub was subscribed: wait until
                    # it is. Without our idle by then, the next probe's statuses are certain.
                    try:
                        self.engine.wait_for(iopub_joined(router), min(1.0, left() or 1))
                    except KernelTimeout:
                        if left() == 0.0:
                            raise
                        continue
                    if not state.idle:
                        continue
                # This probe's idle came: every earlier probe's statuses came before it.
                for _ in probe.events(left()):
                    pass
                self._set_aside_startup_output()
                return reply
        except KernelTimeout:
            raise KernelTimeout(f"kernel did not become ready within {timeout:g} s") from None
        finally:
            for probe in probes:
                probe.discard()  # probes' own messages are not the user's

    # -- requests ------------------------------------------------------------------
    def _send(
        self,
        request: Request,
        claims: frozenset[Channel] | None = None,
        sink: Sink | None = None,
    ) -> tuple[Message, RequestState | None]:
        if request.channel != "stdin":
            self.engine.join_iopub()
        return super()._send(request, claims, sink)

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
        msg, state = self._track(request, claims, on_iopub)
        return PendingRequest(self, msg, state)

    def _request(self, request: Request, reply: bool, timeout: float | None) -> Any:
        if not reply:
            return self._send(request)[0]["msg_id"]
        pending = self.submit(request, claims=REPLY_CLAIMS)
        try:
            return pending.reply(timeout)
        finally:
            pending.discard()  # the reply was handed over: do not requeue it

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
        pending = self.submit(request)
        if stdin_hook is None:
            stdin_hook = make_stdin_hook(self.input, terminal_stdin)
        try:
            return pending.wait(timeout, output_hook or print_output, stdin_hook)
        except KernelDied:
            raise
        finally:
            pending.close()
