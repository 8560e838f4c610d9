"""The asyncio client: jupyter_client's ``AsyncKernelClient`` API on the routing engine.

Sockets are read from the running loop's reader callbacks: no thread, no
nest_asyncio. Request methods return the ``msg_id`` at once, or, with
``reply=True``, an awaitable of the reply. Every algorithm that waits is written once
(in :mod:`~kernelwire.client.base` and :mod:`~kernelwire.client._pending`);
:func:`arun_steps` and :func:`aiterate_steps` perform its waits on the loop.

>>> async with AsyncKernelClient("kernel.json") as client:     # doctest: +SKIP
...     reply = await client.execute("1 + 1", reply=True)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ..protocol.message import Channel, Message
from ..protocol.requests import Request
from ._engine import AsyncEngine
from ._pending import PendingBase
from ._steps import NOTHING, Done, Emit, Outcome, Settle, Step, Steps, Wait, advance, time_left
from .base import ALL_CLAIMS, ChannelBase, ChannelOf, KernelClientBase

AsyncHook = Callable[[Message], Any]
T = TypeVar("T")


async def _settle(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


async def _step_outcome(engine: AsyncEngine | None, step: Step) -> Outcome:
    """Await what ``step`` says: a wait on the loop, or a call's awaitable result."""
    if isinstance(step, Settle):
        waiting = _settle(step.value)
    else:
        assert engine is not None and isinstance(step, Wait)
        waiting = engine.wait_for(step.predicate, step.timeout)
    try:
        return await waiting, None
    except Exception as exc:  # the algorithm's to handle: thrown into it
        return None, exc


async def aiterate_steps(engine: AsyncEngine, steps: Steps[Any]) -> AsyncIterator[Any]:
    """Run an algorithm's steps on the loop, yielding what it emits."""
    outcome = NOTHING
    try:
        while not isinstance(step := advance(steps, *outcome), Done):
            if isinstance(step, Emit):
                yield step.value
            outcome = NOTHING if isinstance(step, Emit) else await _step_outcome(engine, step)
    finally:
        steps.close()  # left early: the algorithm's cleanup runs now


async def arun_steps(engine: AsyncEngine | None, steps: Steps[T]) -> T:
    """Run an algorithm's steps, waiting on the running loop; its result."""
    try:
        outcome = NOTHING
        while not isinstance(step := advance(steps, *outcome), Done):
            outcome = await _step_outcome(engine, step)
        return step.value
    finally:
        steps.close()


class AsyncPendingRequest(PendingBase[AsyncEngine]):
    """A sent request and everything the kernel sends back for it (asyncio).

    ``async for channel, msg in pending`` yields messages in arrival order, up to the
    reply and the IOPub ``status: idle``.
    """

    def __init__(self, client: AsyncKernelClient, msg: Message, state: Any) -> None:
        super().__init__(client.engine, msg, state)
        self.client = client

    async def reply(self, timeout: float | None = None) -> Message:
        """The reply; :class:`KernelTimeout` / :class:`KernelDied` if it does not come."""
        return await arun_steps(self._engine, self._reply_steps(timeout))

    async def events(self, timeout: float | None = None) -> AsyncIterator[tuple[Channel, Message]]:
        """``(channel, message)`` pairs as they arrive, until done; ``timeout`` bounds the whole."""
        left, next_event = time_left(timeout), self._next_event()
        while (event := await self._engine.wait_for(next_event, left())) is not False:
            yield event  # type: ignore[misc]  # mypy joins the predicate's union to object
        self.close()

    def __aiter__(self) -> AsyncIterator[tuple[Channel, Message]]:
        return self.events()

    async def iopub(self, timeout: float | None = None) -> AsyncIterator[Message]:
        """This request's IOPub messages, up to and including ``status: idle``."""
        async for channel, msg in self.events(timeout):
            if channel == "iopub":
                yield msg

    async def wait(
        self,
        timeout: float | None = None,
        output_hook: AsyncHook | None = None,
        stdin_hook: AsyncHook | None = None,
    ) -> Message:
        """Consume everything (hooks may be coroutine functions); return the reply."""
        return await arun_steps(self._engine, self._wait_steps(timeout, output_hook, stdin_hook))


class AsyncChannel(ChannelBase):
    """One channel of an asyncio client, with jupyter_client's channel methods."""

    client: AsyncKernelClient

    async def get_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed message; ``queue.Empty`` on timeout."""
        return await self.client._get_unclaimed(self.name, timeout if block else 0.0)

    async def get_msgs(self) -> list[Message]:
        """Every unclaimed message available now."""
        return await self.client._run(self._all_steps())

    async def msg_ready(self) -> bool:
        """Whether an unclaimed message is waiting."""
        return await self.client._run(self._ready_steps())


class AsyncKernelClient(KernelClientBase[AsyncEngine, Coroutine[Any, Any, Message]]):
    """An asyncio client for one kernel, with jupyter_client's method names.

    Must be used from one event loop (the one running when it first waits).
    """

    _engine_class = AsyncEngine

    async def __aenter__(self) -> AsyncKernelClient:
        if self._engine is None:
            self.start_channels()
        self.engine.attach()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_channels()

    def _run(self, steps: Steps[T]) -> Coroutine[Any, Any, T]:
        return arun_steps(self._engine, steps)

    async def _get_unclaimed(self, channel: Channel, timeout: float | None) -> Message:
        msg = self._take_now(channel)
        return msg if msg is not None else await self._run(self._unclaimed_steps(channel, timeout))

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        """Connect the channels; reading starts on the running loop (now, or at the first wait)."""
        super().start_channels(*args, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.engine.attach()

    shell_channel = ChannelOf(AsyncChannel, "shell")
    iopub_channel = ChannelOf(AsyncChannel, "iopub")
    stdin_channel = ChannelOf(AsyncChannel, "stdin")
    control_channel = ChannelOf(AsyncChannel, "control")

    async def get_shell_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed shell message (``queue.Empty`` on timeout)."""
        return await self._get_unclaimed("shell", timeout if block else 0.0)

    async def get_iopub_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed IOPub message (``queue.Empty`` on timeout)."""
        return await self._get_unclaimed("iopub", timeout if block else 0.0)

    async def get_stdin_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed stdin message (``queue.Empty`` on timeout)."""
        return await self._get_unclaimed("stdin", timeout if block else 0.0)

    async def get_control_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed control message (``queue.Empty`` on timeout)."""
        return await self._get_unclaimed("control", timeout if block else 0.0)

    async def is_alive(self) -> bool:
        """Whether the kernel answers its heartbeat (waits up to ``time_to_dead`` for a pong)."""
        return await self._run(self._alive_steps())

    async def wait_for_ready(self, timeout: float | None = None) -> Message:
        """Wait until the kernel answers ``kernel_info`` and IOPub is connected.

        Returns the ``kernel_info_reply``.
        """
        return await self._run(self._ready_steps(timeout))

    def submit(
        self,
        request: Request,
        *,
        claims: frozenset[Channel] = ALL_CLAIMS,
        on_iopub: Callable[[Message], object] | None = None,
    ) -> AsyncPendingRequest:
        """Send ``request`` and return a handle that receives exactly its messages.

        With ``on_iopub``, the request's IOPub messages go to it as they are read (on
        the loop, from the sockets' reader callbacks), and not to the handle.
        """
        return self._submit(request, claims, AsyncPendingRequest, on_iopub)

    def _request(
        self, request: Request, reply: bool, timeout: float | None
    ) -> str | Coroutine[Any, Any, Message]:
        """The msg_id, or (``reply=True``) an awaitable of the reply."""
        return (
            self._run(self._reply_steps(request, timeout)) if reply else self._send_request(request)
        )

    async def execute_interactive(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        timeout: float | None = None,
        output_hook: AsyncHook | None = None,
        stdin_hook: AsyncHook | None = None,
    ) -> Message:
        """Run ``code``, hand outputs to ``output_hook`` and input requests to ``stdin_hook``;
        return the ``execute_reply``. Hooks may be plain or coroutine functions."""
        request = self._execute_request(
            code, silent, store_history, user_expressions, allow_stdin, stop_on_error
        )
        return await self._run(self._interactive_steps(request, timeout, output_hook, stdin_hook))


__all__ = [
    "AsyncChannel",
    "AsyncKernelClient",
    "AsyncPendingRequest",
    "aiterate_steps",
    "arun_steps",
]
