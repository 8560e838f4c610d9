"""The callback client, for event-driven programs (GUIs, servers, editors).

A background thread reads the sockets and calls your functions as messages
arrive; requests are sent from any thread.

>>> def show(channel, msg): print(channel, msg["msg_type"])
>>> client = CallbackKernelClient("kernel.json", on_unclaimed=show)     # doctest: +SKIP
>>> client.start_channels()                                             # doctest: +SKIP
>>> client.submit_callback(requests.execute("1+1"), on_message=show,
...               on_done=lambda reply: print("done", reply["content"]["status"]))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import KernelDied, KernelwireError
from ..protocol import requests
from ..protocol.message import Channel, Message
from ..protocol.requests import Request
from .base import ALL_CLAIMS
from .blocking import BlockingKernelClient
from .routing import RequestState

log = logging.getLogger("kernelwire.callback")

MessageCallback = Callable[[Channel, Message], None]
FAILURE_SCAN_INTERVAL = 0.1
"""Seconds between the reader thread's looks for callback requests that failed."""


class CallbackKernelClient(BlockingKernelClient):
    """A client whose reader thread calls back: per request, for unclaimed messages, on death.

    Callbacks run on the reader thread; keep them short, and do not block in them on
    this client's replies. ``on_unclaimed(channel, msg)`` gets every message no
    request claimed; ``on_death(error)`` is called once if the kernel dies, or if the
    reader thread stops for any other reason (the error says why; this client then
    delivers nothing more). Every :class:`BlockingKernelClient` method works too, from
    any other thread.
    """

    def __init__(
        self,
        *args: Any,
        on_unclaimed: MessageCallback | None = None,
        on_death: Callable[[KernelDied], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.on_unclaimed = on_unclaimed
        self.on_death = on_death
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Callback requests not yet ended, so that a death or a stopped reader ends them.
        self._callbacks: dict[str, _Callbacks] = {}
        self._callbacks_lock = threading.Lock()

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        """Connect the channels and start the reader thread."""
        if self._engine is not None:
            return
        super().start_channels(*args, **kwargs)
        if self.on_unclaimed is not None:
            self.engine.router.unclaimed_sink = self._deliver_unclaimed
            for channel in ("control", "stdin"):
                self.engine.watch(channel)  # every message is the callback's, solicited or not
        self._stopping = False
        self._thread = threading.Thread(
            target=self._read_forever, name="kernelwire-reader", daemon=True
        )
        self._thread.start()

    def _deliver_unclaimed(self, channel: Channel, msg: Message) -> None:
        if self.on_unclaimed is not None:
            _safely(self.on_unclaimed, channel, msg)

    def _read_forever(self) -> None:
        engine = self.engine
        router = engine.router

        scan_due = 0.0

        def stop_or_death() -> bool | None:
            nonlocal scan_due
            if self._stopping or router.death is not None:
                return True
            now = time.monotonic()
            if now >= scan_due:
                scan_due = now + FAILURE_SCAN_INTERVAL
                self._end_failed()
            return None

        try:
            engine.wait_for(stop_or_death, None)
        except Exception as exc:  # whatever stopped the reader, everyone must hear it
            if self._stopping:
                return
            failure = exc
            engine.run_locked(
                lambda: router.reader_stopped(f"the reader thread of {self!r}", failure)
            )
        death = router.death
        if death is None or self._stopping:
            return
        self._end_all(death)
        if self.on_death is not None:
            _safely(self.on_death, death)

    def _end(self, msg_id: str) -> _Callbacks | None:
        """Stop tracking callback request ``msg_id``; its callbacks, if it was not ended yet."""
        with self._callbacks_lock:
            callbacks = self._callbacks.pop(msg_id, None)
        if callbacks is not None and self._engine is not None:
            self._engine.router.pending.pop(msg_id, None)
        return callbacks

    def _end_failed(self) -> None:
        """End the callback requests that failed (e.g. idle without reply, see ``REPLY_GRACE``)."""
        with self._callbacks_lock:
            unfinished = list(self._callbacks.items())
        for msg_id, callbacks in unfinished:
            if callbacks.state is None:
                continue
            try:
                callbacks.state.raise_if_failed()
            except KernelwireError as error:
                if self._end(msg_id) is not None:
                    callbacks.fail(error)

    def _end_all(self, error: KernelwireError) -> None:
        """End every unfinished callback request with ``error``."""
        with self._callbacks_lock:
            ids = list(self._callbacks)
        for msg_id in ids:
            callbacks = self._end(msg_id)
            if callbacks is not None:
                callbacks.fail(error)

    def stop_channels(self) -> None:
        """Stop the reader thread and close the channels."""
        self._stopping = True
        engine = self._engine
        thread, self._thread = self._thread, None
        if engine is not None:
            engine.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        super().stop_channels()
        with self._callbacks_lock:
            self._callbacks.clear()

    def submit_callback(
        self,
        request: Request,
        *,
        on_message: MessageCallback | None = None,
        on_done: Callable[[Message | None], None] | None = None,
        on_error: Callable[[KernelwireError], None] | None = None,
        claims: frozenset[Channel] = ALL_CLAIMS,
    ) -> str:
        """Send ``request``; its messages go to ``on_message(channel, msg)`` as they arrive,
        and ``on_done(reply)`` runs once the reply and ``status: idle`` are in.

        A request that cannot complete (the kernel died, its reply was lost, the
        reader thread stopped) ends with ``on_error(error)`` instead, the kernelwire
        error saying why; without ``on_error``, with ``on_done(None)``, the error
        logged. Either way each request ends exactly once. Returns the msg_id.
        """
        callbacks = _Callbacks(on_done, on_error)

        def sink(channel: Channel, msg: Message) -> None:
            if on_message is not None:
                _safely(on_message, channel, msg)
            state = callbacks.state
            if state is not None and state.done and self._end(state.msg_id) is not None:
                callbacks.succeed(state.reply)

        msg, state = self._send(request, claims, sink)
        assert state is not None
        with self._callbacks_lock:
            callbacks.state = state
            self._callbacks[state.msg_id] = callbacks
        if state.done and self._end(state.msg_id) is not None:  # it ended while we sent it
            callbacks.succeed(state.reply)
        elif self.engine.router.death is not None:
            self._end_all(self.engine.router.death)
        return msg.msg_id

    def execute_callback(
        self,
        code: str,
        *,
        on_message: MessageCallback | None = None,
        on_done: Callable[[Message | None], None] | None = None,
        on_error: Callable[[KernelwireError], None] | None = None,
        **options: Any,
    ) -> str:
        """Run ``code`` with callbacks (see :meth:`submit_callback`); ``options`` go to
        :func:`kernelwire.requests.execute`."""
        request = requests.execute(code, **options)
        return self.submit_callback(
            request, on_message=on_message, on_done=on_done, on_error=on_error
        )


class _Callbacks:
    """How one callback request ends: ``on_done(reply)``, or ``on_error(error)``."""

    __slots__ = ("on_done", "on_error", "state")

    def __init__(
        self,
        on_done: Callable[[Message | None], None] | None,
        on_error: Callable[[KernelwireError], None] | None,
    ) -> None:
        self.on_done = on_done
        self.on_error = on_error
        self.state: RequestState | None = None

    def succeed(self, reply: Message | None) -> None:
        if self.on_done is not None:
            _safely(self.on_done, reply)

    def fail(self, error: KernelwireError) -> None:
        if self.on_error is not None:
            _safely(self.on_error, error)
            return
        log.warning("a callback request ended without its reply: %s", error)
        if self.on_done is not None:
            _safely(self.on_done, None)


def _safely(func: Callable[..., Any], *args: Any) -> None:
    try:
        func(*args)
    except Exception:
        log.exception("a kernelwire callback raised")
