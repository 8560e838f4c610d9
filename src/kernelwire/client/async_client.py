"""The asyncio client: jupyter_client's ``AsyncKernelClient`` API on the routing engine.

Sockets are read from the running loop's reader callbacks: no thread, no
nest_asyncio. Request methods return the ``msg_id`` at once, or, with
``reply=True``, an awaitable of the reply.

>>> async with AsyncKernelClient("kernel.json") as client:     # doctest: +SKIP
...     reply = await client.execute("1 + 1", reply=True)
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from ..errors import KernelTimeout
from ..protocol import requests
from ..protocol.message import Channel, Message
from ..protocol.requests import Request
from .base import ALL_CLAIMS, REPLY_CLAIMS, KernelClientBase
from .blocking import HeartbeatChannel
from .engine import AsyncEngine, take_unclaimed
from .hooks import make_stdin_hook, print_output, terminal_stdin
from .pending import PendingBase
from .routing import RequestState, iopub_joined

AsyncHook = Callable[[Message], Any]


class AsyncPendingRequest(PendingBase[AsyncEngine]):
    """A sent request and everything the kernel sends back for it (asyncio).

    ``async for channel, msg in pending`` yields messages in arrival order, up to the
    reply and the IOPub ``status: idle``.
    """

    def __init__(self, client: AsyncKernelClient, msg: Message, state: RequestState) -> None:
        super().__init__(client.engine, msg, state)
        self.client = client

    async def reply(self, timeout: float | None = None) -> Message:
        """The reply; :class:`KernelTimeout` / :class:`KernelDied` if it does not come."""
        return await self._engine.wait_for(self._reply_ready(), timeout)

    async def events(self, timeout: float | None = None) -> AsyncIterator[tuple[Channel, Message]]:
        """``(channel, message)`` pairs as they arrive, until done; ``timeout`` bounds the whole."""
        deadline = None if timeout is None else time.monotonic() + timeout
        next_event = self._next_event()
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = await self._engine.wait_for(next_event, remaining)
            if event is False:
                self.close()
                return
            yield event  # type: ignore[misc]

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
        async for channel, msg in self.events(timeout):
            hook = output_hook if channel == "iopub" else stdin_hook if channel == "stdin" else None
            if hook is not None:
                result = hook(msg)
                if inspect.isawaitable(result):
                    await result
        return self._final_reply()


class AsyncChannel:
    """One channel of an asyncio client, with jupyter_client's channel methods."""

    def __init__(self, client: AsyncKernelClient, name: Channel) -> None:
        self.client = client
        self.name = name

    async def get_msg(self, block: bool = True, timeout: float | None = None) -> Message:
        """The next unclaimed message; ``queue.Empty`` on timeout."""
        return await self.client._get_unclaimed(self.name, timeout if block else 0.0)

    async def get_msgs(self) -> list[Message]:
        """Every unclaimed message available now."""
        out: list[Message] = []
        while True:
            try:
                out.append(await self.get_msg(block=False))
            except queue.Empty:
                return out

    async def msg_ready(self) -> bool:
        """Whether an unclaimed message is waiting."""
        self.client.engine.attach()
        await asyncio.sleep(0)
        return bool(self.client.engine.router.unclaimed[self.name])

    def send(self, msg: Mapping[str, Any]) -> None:
        """Send a message you built on this channel."""
        self.client.send_message(self.name, msg)

    def is_alive(self) -> bool:
        """Whether the channel is open."""
        engine = self.client._engine
        return engine is not None and engine.has_channel(self.name)

    def start(self) -> None:
        """Kept for jupyter_client compatibility."""

    def stop(self) -> None:
        """Kept for jupyter_client compatibility."""

    close = stop


class AsyncKernelClient(KernelClientBase[AsyncEngine]):
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

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        """Connect the channels; reading starts on the running loop (now, or at the first wait)."""
        super().start_channels(*args, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.engine.attach()

    @property
    def shell_channel(self) -> AsyncChannel:
        """The shell channel."""
        return AsyncChannel(self, "shell")

    @property
    def iopub_channel(self) -> AsyncChannel:
        """The IOPub channel."""
        return AsyncChannel(self, "iopub")

    @property
    def stdin_channel(self) -> AsyncChannel:
        """The stdin channel."""
        return AsyncChannel(self, "stdin")

    @property
    def control_channel(self) -> AsyncChannel:
        """The control channel."""
        return AsyncChannel(self, "control")

    @property
    def hb_channel(self) -> HeartbeatChannel:
        """The heartbeat channel."""
        return HeartbeatChannel(self)

    async def _get_unclaimed(self, channel: Channel, timeout: float | None) -> Message:
        engine = self.engine
        queue_ = engine.router.unclaimed[channel]
        if queue_ and engine.router.unclaimed_sink is None:
            return queue_.popleft()  # fast path: deque.popleft is atomic
        try:
            return await engine.wait_for(take_unclaimed(engine.router, channel), timeout)
        except KernelTimeout:
            raise queue.Empty from None

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
        engine = self._engine
        if engine is None:
            return False
        if not engine.has_channel("hb"):
            return engine.router.death is None
        heartbeat = engine.heartbeat

        def answered() -> bool | None:
            if engine.router.death is not None:
                return False
            return True if heartbeat.beating(time.monotonic()) else None

        try:
            return await engine.wait_for(answered, self.time_to_dead)
        except KernelTimeout:
            return False

    async def wait_for_ready(self, timeout: float | None = None) -> Message:
        """Wait until the kernel answers ``kernel_info`` and IOPub is connected.

        Returns the ``kernel_info_reply``.
        """
        if self._engine is None:
            self.start_channels()
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        router = self.engine.router
        probes: list[AsyncPendingRequest] = []
        try:
            while True:
                await self.engine.join_iopub(left())
                welcomed_before = router.iopub_welcomed
                probe = self.submit(requests.kernel_info())
                probes.append(probe)
                reply = await probe.reply(left())
                if not self.engine.has_channel("iopub"):
                    return reply
                state = probe._state
                if not welcomed_before:
                    try:
                        await self.engine.wait_for(iopub_joined(router), min(1.0, left() or 1))
                    except KernelTimeout:
                        if left() == 0.0:
                            raise
                        continue
                    if not state.idle:
                        continue
                async for _ in probe.events(left()):
                    pass
                self._set_aside_startup_output()
                return reply
        except KernelTimeout:
            raise KernelTimeout(f"kernel did not become ready within {timeout:g} s") from None
        finally:
            for probe in probes:
                probe.discard()

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
        msg, state = self._track(request, claims, on_iopub)
        return AsyncPendingRequest(self, msg, state)

    def _request(self, request: Request, reply: bool, timeout: float | None) -> Any:
        if not reply:
            return self._send(request)[0]["msg_id"]
        pending = self.submit(request, claims=REPLY_CLAIMS)

        async def wait_reply() -> Message:
            try:
                return await pending.reply(timeout)
            finally:
                pending.discard()

        return wait_reply()

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
        pending = self.submit(request)
        if stdin_hook is None:
            stdin_hook = make_stdin_hook(self.input, terminal_stdin)
        try:
            return await pending.wait(timeout, output_hook or print_output, stdin_hook)
        finally:
            pending.close()


__all__ = ["AsyncChannel", "AsyncKernelClient", "AsyncPendingRequest"]
