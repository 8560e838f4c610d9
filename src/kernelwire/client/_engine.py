"""Engines: a transport and a :class:`~kernelwire.client._core.ClientCore`, driven by a way
of waiting.

The core decides (routing, heartbeat, IOPub join, send queue, deadlines); an engine only
waits and moves units between the transport it is given and the core.
:class:`BlockingEngine` has no thread of its own: whichever thread waits pumps the
transport (one at a time, the others wait on a condition), so the blocking client works
inside a running event loop and leaves no thread behind. :class:`AsyncEngine` reads the
transport from the asyncio loop's reader callbacks. Both run over any
:class:`~kernelwire.transports.base.Transport` (ZeroMQ, a server's WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

import zmq

from ..errors import ClientClosed, KernelDied, KernelTimeout
from ..protocol.codec import Session
from ..protocol.connection import ChannelName
from ..protocol.message import Channel, Message
from ..transports.base import Transport, Waitable, fileno
from ._core import (
    IOPUB_JOIN_WAIT,
    IOPUB_PROBE_LIMIT,
    LIVENESS_INTERVAL,
    SEND_RETRY_INTERVAL,
    ClientCore,
)
from .heartbeat import Heartbeat
from .routing import MAX_UNCLAIMED, Router

log = logging.getLogger("kernelwire.engine")

T = TypeVar("T")
P = ParamSpec("P")
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
"""Messages larger than this (all frames together) are refused; ``None`` on an engine lifts it."""
MONITOR_INTERVAL = 0.2
"""Seconds between the blocking engine's looks at the connection monitors (dropped?)."""
ON_DEMAND_CHANNELS: tuple[ChannelName, ...] = ("control", "stdin")
"""Channels that carry only answers to our own control requests and to executes that allow
stdin: the blocking engine polls them once one is sent, or once someone asks for their
messages. Every socket in a poll costs each round trip a little."""
ALL_CHANNELS: tuple[ChannelName, ...] = ("shell", "iopub", "stdin", "control", "hb")

__all__ = [
    "ALL_CHANNELS",
    "IOPUB_JOIN_WAIT",
    "IOPUB_PROBE_LIMIT",
    "LIVENESS_INTERVAL",
    "MAX_MESSAGE_BYTES",
    "SEND_RETRY_INTERVAL",
    "AsyncEngine",
    "BlockingEngine",
    "Engine",
    "take_unclaimed",
]


class Engine:
    """What both engines share, and what other layers may call: the state lives in
    :attr:`core`, the wire behind :attr:`transport`."""

    def __init__(
        self,
        transport: Transport[Any],
        session: Session,
        *,
        heartbeat: Heartbeat | None = None,
        max_unclaimed: int | None = MAX_UNCLAIMED,
    ) -> None:
        self.transport = transport
        self.session = session
        self.core = ClientCore(
            session,
            transport.codec,
            transport.channels,
            where=transport.where,
            heartbeat=heartbeat,
            max_unclaimed=max_unclaimed,
            iopub_join_wait=IOPUB_JOIN_WAIT if transport.needs_iopub_join else 0.0,
            server_statuses=not transport.needs_iopub_join,
        )
        self.closed = False
        # The core's parts, named here for the clients' hot paths (they never change).
        self.router: Router = self.core.router
        self.heartbeat: Heartbeat = self.core.heartbeat
        self.liveness_checks: list[Callable[[], KernelDied | None]] = self.core.liveness_checks
        """Extra death checks run every :data:`LIVENESS_INTERVAL` while someone waits."""

    @property
    def max_message_bytes(self) -> int | None:
        """Messages larger than this are refused (``None``: no limit)."""
        return getattr(self.transport.codec, "max_bytes", None)

    @max_message_bytes.setter
    def max_message_bytes(self, limit: int | None) -> None:
        self.transport.codec.max_bytes = limit  # type: ignore[attr-defined]

    def has_channel(self, channel: ChannelName) -> bool:
        """Whether ``channel`` is open on this engine."""
        return channel in self.transport.channels

    def messages_read(self, channel: Channel) -> int:
        """How many messages were read on ``channel`` (refused ones included)."""
        return self.core.router.received_on[channel]

    def watch(self, channel: ChannelName) -> None:
        """Make sure ``channel``'s messages are read (engines that read all, always do)."""

    def wake(self) -> None:
        """Make a thread blocked in a pump (if any) return soon."""

    # -- what lifecycle layers may ask of a client's engine ------------------------------
    def add_liveness_check(self, check: Callable[[], KernelDied | None]) -> None:
        """Run ``check`` every :data:`LIVENESS_INTERVAL` while someone waits; a
        :class:`KernelDied` it returns marks the kernel dead."""
        self.run_locked(lambda: self.core.liveness_checks.append(check))

    def pause_liveness(self) -> bool:
        """Stop heartbeat pings and verdicts (a restart is expected to drop the
        connection); returns whether they were paused already."""
        return self.run_locked(self.core.pause_liveness)

    def resume_liveness(self) -> None:
        """Resume heartbeat pings and verdicts."""
        self.run_locked(self.core.resume_liveness)

    def expect_stop(self) -> None:
        """The kernel is about to be stopped on purpose (from any thread): its IOPub drop
        is no loss to warn about."""
        self.run_anywhere(self.core.expect_stop)

    def expect_restart(self) -> None:
        """The kernel is about to be restarted on the same connection info (from any
        thread, before the old process stops): its IOPub drop is no loss to warn about,
        and IOPub is joined again before the next request, on a message of the new
        process. Done after the stop, the new process's messages may have been read
        already, and the join would wait for one more."""
        self.run_anywhere(self.core.expect_restart)

    def reset_after_restart(self, paused: bool = False) -> None:
        """The kernel restarted on the same connection (from any thread, once the new
        process is up): forget its death and pings, and resume the heartbeat (unless it
        was ``paused`` before the restart)."""

        def reset() -> None:
            self.core.reset_after_restart()
            self.core.resume_liveness(paused)

        self.run_anywhere(reset)

    def mark_dead(self, error: KernelDied) -> None:
        """Record that the kernel died: waits raise ``error`` once queued messages are read."""
        self.run_locked(lambda: self.core.mark_dead(error))
        self._wake_all()

    def fail_pending(self, error: KernelDied) -> None:
        """Fail every request still waiting with ``error`` (their kernel was restarted
        under them), from any thread: their waits raise it promptly."""
        self.run_anywhere(lambda: self.core.fail_pending(error))

    def run_anywhere(self, func: Callable[[], object]) -> None:
        """Call ``func`` (which changes the core's state) from any thread, where the core
        may be changed, and let every waiter look again."""
        self.run_locked(func)
        self._wake_all()

    def peer_disconnected(self) -> bool:
        """Whether a monitored connection (heartbeat, IOPub) dropped since the last look
        (for a caller that does not wait on this engine meanwhile)."""
        return bool(self.transport.dropped(time.monotonic()))

    def run_locked(self, func: Callable[[], T]) -> T:
        """Call ``func`` where the router may be read and changed safely."""
        return func()

    def _wake_all(self) -> None:
        """Make every waiter look at its predicate again (the router changed)."""
        self.wake()

    # -- for the drivers -------------------------------------------------------------
    def _look(
        self, predicate: Callable[[], T | None], deadline: float | None, now: float
    ) -> tuple[T | None, float | None]:
        """What a waiter sees: the predicate's result (non-None: done), and the seconds
        left until ``deadline``; :class:`ClientClosed` once the engine is closed."""
        result = predicate()
        if result is None and self.closed:
            raise ClientClosed("the client's channels were stopped while waiting")
        return result, None if deadline is None else deadline - now

    def _timed_out(self, timeout: float | None) -> KernelTimeout:
        """The error of a wait that ran out of time, saying why when the transport knows
        (a connection being re-established)."""
        text = f"no answer from the kernel within {timeout:g} s"
        why = self.transport.stalled()
        return KernelTimeout(text if why is None else f"{text}: {why}")

    def _send_unit(self, channel: ChannelName, unit: Any) -> bool:
        """The transport's send; a channel that cannot send at all drops the message."""
        try:
            return self.transport.send(channel, unit)
        except ClientClosed as exc:
            log.warning("could not send on the %s channel: %s", channel, exc)
            return True

    def _check_open(self, channel: ChannelName) -> None:
        if self.closed:
            raise ClientClosed("the client's channels are stopped")
        if channel not in self.transport.channels:
            raise ClientClosed(f"the {channel} channel is not started")

    def _check_connections(self, now: float) -> list[ChannelName]:
        """Act on dropped connections (each but the heartbeat's is replaced); returns them."""
        dropped = self.transport.dropped(now)
        if not dropped:
            return dropped
        replaced: list[ChannelName] = []
        for channel in dropped:
            if channel != "hb" and channel not in replaced:
                replaced.extend(self._reconnect(channel))
        self.run_locked(functools.partial(self.core.connections_dropped, dropped, replaced, now))
        self._wake_all()  # requests failed, or a kernel turned suspect
        return dropped

    def _reconnect(self, channel: ChannelName) -> list[ChannelName]:
        return self.transport.reconnect(channel)

    def _lost(self) -> None:
        if self.transport.lost is not None:
            self.core.transport_lost(self.transport.lost)


class BlockingEngine(Engine):
    """Thread-safe engine where waiting threads take turns pumping the transport."""

    def __init__(self, transport: Transport[Any], session: Session, **kwargs: Any) -> None:
        super().__init__(transport, session, **kwargs)
        self._cond = threading.Condition()
        self._pump_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # What one poll waits on: every ZeroMQ socket in it costs each poll system calls,
        # so it holds only the sockets that can have something for us now. The heartbeat
        # is in it while a ping is out; control and stdin once they are used (watch());
        # the connection monitors are looked at every MONITOR_INTERVAL instead.
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._poller_lock = threading.Lock()  # other threads add sockets (watch)
        self._polled: dict[Waitable, ChannelName] = {}
        self._watched: set[ChannelName] = set()  # the channels of _polled, for watch()
        for channel in ("shell", "iopub"):
            if self.has_channel(channel):
                self._poll(channel)
        self._monitored = bool(transport.event_waitables())
        self._monitor_due = 0.0

    def _poll(self, channel: ChannelName) -> None:
        waitable = self.transport.waitable(channel)
        with self._poller_lock:
            if waitable not in self._polled:  # channels may share one (a WebSocket)
                self._polled[waitable] = channel
                self._poller.register(waitable, zmq.POLLIN)
            self._watched.add(channel)

    def _unpoll(self, waitable: Waitable) -> None:
        """Only the pumping thread removes sockets (a poll in progress keeps its indices)."""
        with self._poller_lock:
            channel = self._polled.pop(waitable, None)
            if channel is not None:
                self._poller.unregister(waitable)
                self._watched.difference_update(
                    [name for name in self._watched if self.transport.waitable(name) is waitable]
                )

    def _poll_heartbeat(self) -> None:
        if not self.has_channel("hb"):
            return
        if self.heartbeat.outstanding is not None:
            if "hb" not in self._watched:
                self._poll("hb")
        elif "hb" in self._watched:
            self._unpoll(self.transport.waitable("hb"))

    def watch(self, channel: ChannelName) -> None:
        """Poll ``channel`` from now on (see :data:`ON_DEMAND_CHANNELS`); from any thread."""
        if channel in self._watched or self.closed or not self.has_channel(channel):
            return
        self._poll(channel)
        self.wake()  # a pump blocked in a poll without this socket polls again

    # -- sending -------------------------------------------------------------------
    def send(self, channel: ChannelName, msg: Mapping[str, Any]) -> None:
        """Queue ``msg`` for ``channel`` and send it (from any thread).

        The first request waits for IOPub to be joined (see :data:`IOPUB_PROBE_LIMIT`).
        """
        self._check_open(channel)
        if msg["msg_type"] == "execute_request" and msg["content"].get("allow_stdin"):
            self.watch("stdin")  # its input_request may come
        if channel in ON_DEMAND_CHANNELS:
            self.watch(channel)  # its answer comes there
        core = self.core
        # Not looked at for a while (nobody waited): a connection replaced now, before the
        # request goes out, is joined first (a restarted kernel's IOPub).
        if (
            self._monitored
            and time.monotonic() >= self._monitor_due
            and self._pump_lock.acquire(blocking=False)
        ):
            try:
                self._look_at_connections(time.monotonic())
            finally:
                self._release_pump()
        with self._cond:
            core.send(channel, msg, time.monotonic())
        if core.held is not None and channel != "stdin":
            # The core ends the join within the probe limit; the bound matters only to a
            # sender that holds the pump itself (a callback on the reader thread): its
            # message goes out when the join ends, as a held one does.
            with contextlib.suppress(KernelTimeout):
                self.wait_for(core.join_done, IOPUB_PROBE_LIMIT)
        if self._pump_lock.acquire(blocking=False):
            try:
                core.flush(self._send_unit)
            finally:
                self._release_pump()
        else:
            self.wake()

    def begin_join(self) -> bool:
        """Start the IOPub join if this connection needs it (once); True while one is in
        progress (:meth:`ClientCore.join_done` tells when it is over)."""
        core = self.core
        with self._cond:
            return core.start_join(time.monotonic()) or core.joining

    def wake(self) -> None:
        # A full or closed pipe means the pumper is awake (or gone) anyway.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def _release_pump(self) -> None:
        refused = False
        while True:
            self._pump_lock.release()
            with self._cond:
                self._cond.notify_all()
            # A sender may have queued units after our last flush and failed to take the
            # lock. A unit the transport refused waits for the next pump (it retries).
            if refused or not self.core.outbox or self.closed:
                return
            if not self._pump_lock.acquire(blocking=False):
                return
            refused = not self.core.flush(self._send_unit)

    # -- receiving -----------------------------------------------------------------
    def pump(self, max_wait: float | None) -> None:
        """One round: flush sends, tick the core, wait up to ``max_wait`` seconds, route
        what came.

        The caller must hold the pump lock (use :meth:`wait_for`, which does).
        """
        core, transport, send = self.core, self.transport, self._send_unit
        core.flush(send)
        now = time.monotonic()
        if self._monitored and now >= self._monitor_due:
            self._look_at_connections(now)
        core.tick(now, send)
        self._poll_heartbeat()
        wait = core.next_deadline(now)
        if self._monitored:
            wait = min(wait, MONITOR_INTERVAL)
        if max_wait is not None:
            wait = min(wait, max_wait)
        transport.check_open()
        try:
            events = self._poller.poll(max(0, int(wait * 1000 + 0.999)))
        except zmq.ZMQError as exc:
            raise ClientClosed(
                f"a socket of this client failed ({exc}); stop and reconnect"
            ) from exc
        if self.closed:
            return
        batches: list[tuple[ChannelName, list[Any]]] = []
        for waitable, _ in events:
            if waitable == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            channel = self._polled[waitable]
            batches.append((channel, transport.drain(channel)))
        if batches:
            now = time.monotonic()
            with self._cond:
                for channel, batch in batches:
                    core.receive(channel, batch, now)
                self._cond.notify_all()
        core.flush(send)
        with self._cond:
            if transport.lost is not None:
                self._lost()
            core.tick(time.monotonic(), send)
            if core.router.death is not None:
                self._cond.notify_all()

    def _look_at_connections(self, now: float) -> None:
        """Read the connection monitors (every :data:`MONITOR_INTERVAL`); the caller
        holds the pump lock."""
        self._monitor_due = now + MONITOR_INTERVAL
        if not self.closed:
            self._check_connections(now)

    def _reconnect(self, channel: ChannelName) -> list[ChannelName]:
        transport = self.transport
        before = {name: transport.waitable(name) for name in transport.channels}
        watched = set(self._watched)
        replaced = transport.reconnect(channel)
        for name in replaced:
            self._unpoll(before[name])  # closed now: the poller only forgets it
            if name in watched:
                self._poll(name)
        return replaced

    def wait_for(self, predicate: Callable[[], T | None], timeout: float | None) -> T:
        """Pump until ``predicate()`` (called under the routing lock) returns non-None.

        Raises :class:`KernelTimeout` after ``timeout`` seconds (``None``: no limit);
        the predicate raises :class:`KernelDied` itself when it sees a dead kernel.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._cond
        pumped = False
        while True:
            with cond:
                result, remaining = self._look(predicate, deadline, time.monotonic())
            if result is not None:
                return result
            if remaining is not None and remaining <= 0 and pumped:
                raise self._timed_out(timeout)
            if self._pump_lock.acquire(blocking=False):
                try:
                    if not self.closed:
                        # Even with no time left, read once what is already waiting.
                        self.pump(remaining if remaining is None else max(remaining, 0.0))
                        pumped = True
                finally:
                    self._release_pump()
            else:
                with cond:
                    result = predicate()
                    if result is not None:
                        return result
                    if self._pump_lock.locked():
                        cond.wait(remaining)
                pumped = True  # someone else pumped for us meanwhile

    def run_locked(self, func: Callable[[], T]) -> T:
        """Call ``func`` under the routing lock (to read or change router state safely)."""
        with self._cond:
            return func()

    def _wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()
        self.wake()  # the pumping waiter looks again

    def close(self) -> None:
        """Stop the engine: close the transport and the wake pipe; waiters get ClientClosed."""
        if self.closed:
            return
        self.closed = True
        self.wake()
        with self._pump_lock:
            self.transport.close()
            self._poller = zmq.Poller()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        with self._cond:
            self._cond.notify_all()


def _loop_callback(
    method: Callable[Concatenate[AsyncEngine, P], None],
) -> Callable[Concatenate[AsyncEngine, P], None]:
    """For a method the event loop calls: whatever it raises marks the kernel dead with
    the reason and wakes every waiter. Raised to the loop, it would only be logged there,
    and the waiters would wait for their timeouts (or for ever) without knowing why."""

    @functools.wraps(method)
    def guarded(self: AsyncEngine, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            self.router.reader_stopped("this client's socket reader on the event loop", exc)
            self._wake_waiters()

    return guarded


class AsyncEngine(Engine):
    """Engine read by the running asyncio loop's reader callbacks (no thread, no polling task)."""

    def __init__(self, transport: Transport[Any], session: Session, **kwargs: Any) -> None:
        super().__init__(transport, session, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._judge_timer: asyncio.TimerHandle | None = None
        self._fds: list[int] = []

    def attach(self) -> asyncio.AbstractEventLoop:
        """Hook the transport into the running loop (once); returns the loop."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        if self._loop is not None:
            raise RuntimeError("an AsyncKernelClient is bound to the event loop it started in")
        if self.closed:
            raise ClientClosed("the client's channels are stopped")
        self._loop = loop
        self._add_readers()
        self._tick()
        loop.call_soon(self._on_readable)
        return loop

    def _add_readers(self) -> None:
        loop = self._loop
        assert loop is not None
        for channel in self.transport.channels:
            fd = fileno(self.transport.waitable(channel))
            if fd not in self._fds:  # channels may share one (a WebSocket)
                # A socket's FD fires for that socket only: read just it.
                loop.add_reader(fd, self._on_readable, channel)
                self._fds.append(fd)
        for waitable in self.transport.event_waitables():
            fd = fileno(waitable)
            loop.add_reader(fd, self._on_monitor)
            self._fds.append(fd)
        # A ZeroMQ FD signals only once its socket has been read dry: read the monitors
        # now (as attach() does the sockets), or their events never wake the loop.
        loop.call_soon(self._on_monitor)

    def _remove_readers(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for fd in self._fds:
                self._loop.remove_reader(fd)
        self._fds.clear()

    @_loop_callback
    def _on_monitor(self) -> None:
        loop = self._loop
        if self.closed or loop is None:
            return
        transport = self.transport
        judging = transport.next_check() is not None
        dropped = self._check_connections(time.monotonic())
        if judging:  # a verdict may have consumed a waitable's edge: read every channel
            loop.call_soon(self._on_readable)
        later = transport.next_check()
        if later is not None and self._judge_timer is None:
            self._judge_timer = loop.call_later(later, self._judge)
        if "hb" in dropped:
            self._schedule(0.0)  # ping the suspect kernel now, judge it in time

    def _judge(self) -> None:
        """A dropped connection's verdict is due (see :meth:`Transport.next_check`)."""
        self._judge_timer = None
        self._on_monitor()

    def _reconnect(self, channel: ChannelName) -> list[ChannelName]:
        self._remove_readers()
        replaced = self.transport.reconnect(channel)
        self._add_readers()
        self._on_readable()
        return replaced

    def _schedule(self, delay: float) -> None:
        """Tick within ``delay`` seconds (sooner if a tick is due sooner already)."""
        loop = self._loop
        if loop is None or self.closed:
            return
        # Never less than 10 ms: a tick re-checks every waiter.
        when = loop.time() + max(delay, 0.01)
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._tick)

    @_loop_callback
    def _tick(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        if self.closed or self._loop is None:
            return
        core = self.core
        now = time.monotonic()
        core.tick(now, self._send_unit)
        self._flush()  # the join may have ended, or probed; a refused unit is retried
        # Waiters re-check their predicates: some depend on time (a lost idle) or on death.
        self._wake_waiters()
        # A pong or a new liveness check does not reschedule this timer: never sleep long.
        self._schedule(min(core.next_deadline(now), core.heartbeat.interval))

    @_loop_callback
    def _on_readable(self, channel: ChannelName | None = None) -> None:
        """Read ``channel`` (every channel when ``None``) until it has nothing left."""
        if self.closed:
            return
        core, transport = self.core, self.transport
        got = False
        now = time.monotonic()
        for name in transport.channels if channel is None else (channel,):
            # Edge-triggered FDs: read until ZeroMQ says nothing is left, which re-arms
            # the FD. drain() stops on exactly that, unless it stopped at its limit (of
            # messages or of bytes): then ``drained`` is off.
            while True:
                batch = transport.drain(name)
                if batch:
                    core.receive(name, batch, now)
                    got = True
                if transport.drained:
                    break
        self._lost()
        if got or core.router.death is not None:
            if core.outbox:
                self._flush()  # what the join held
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def send(self, channel: ChannelName, msg: Mapping[str, Any]) -> None:
        """Queue ``msg`` for ``channel`` and send it (from the loop's thread); the first
        request is held until IOPub is joined (with a running loop to wait on)."""
        self._check_open(channel)
        core = self.core
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            hold = False  # no loop to wait on: send at once
        else:
            self.attach()
            hold = True
        core.send(channel, msg, time.monotonic(), hold=hold)
        if core.held is not None:
            self._schedule(core.next_deadline(time.monotonic()))
        self._flush()

    def _flush(self) -> None:
        """Send what is queued; re-check the sockets after (a send resets a ZeroMQ FD's edge)."""
        outbox = self.core.outbox
        if not outbox or self.closed:
            return
        # A send can consume a socket's FD edge: re-read the sockets sent on.
        sent_on = outbox[0][0] if len(outbox) == 1 else None
        if not self.core.flush(self._send_unit):
            self._schedule(SEND_RETRY_INTERVAL)  # without a loop yet, attach() tries again
        if self._loop is not None:
            self._loop.call_soon(self._on_readable, sent_on)

    def begin_join(self) -> bool:
        """Start the IOPub join if this connection needs it (once); True while one is in
        progress (:meth:`ClientCore.join_done` tells when it is over)."""
        self.attach()
        core = self.core
        if core.start_join(time.monotonic()):
            self._schedule(core.next_deadline(time.monotonic()))
        return core.joining

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float | None) -> T:
        """Wait until ``predicate()`` returns non-None; :class:`KernelTimeout` after ``timeout``."""
        loop = self.attach()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            result, remaining = self._look(predicate, deadline, loop.time())
            if result is not None:
                return result
            if remaining is not None and remaining <= 0:
                self._on_readable()  # read once what is already waiting
                result = predicate()
                if result is not None:
                    return result
                raise self._timed_out(timeout)
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            handle = None if remaining is None else loop.call_later(remaining, _resolve, fut)
            try:
                await fut
            finally:
                if handle is not None:
                    handle.cancel()

    def _wake_all(self) -> None:
        self._wake_waiters()

    def run_anywhere(self, func: Callable[[], object]) -> None:
        """Call ``func`` on the loop's thread (at once if this is it, or if there is no
        loop yet), then wake the waiters."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and _running_loop() is not loop:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nobody waits there
                loop.call_soon_threadsafe(self.run_anywhere, func)
                return
        super().run_anywhere(func)

    def close(self) -> None:
        """Detach from the loop and close the transport; waiters get ClientClosed."""
        if self.closed:
            return
        self.closed = True
        for timer in (self._timer, self._judge_timer):
            if timer is not None:
                timer.cancel()
        self.core.outbox.clear()
        self._remove_readers()
        self.transport.close()
        self._wake_waiters()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def take_unclaimed(router: Router, channel: Channel) -> Callable[[], Message | None]:
    """A predicate taking the oldest unclaimed ``channel`` message; raises if the kernel died."""

    def take() -> Message | None:
        msg = router.take_unclaimed(channel)
        if msg is None:
            router.check_alive()
        return msg

    return take
