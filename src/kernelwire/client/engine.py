"""Engines: a transport, a session and the router, driven by a way of waiting.

:class:`BlockingEngine` has no thread of its own: whichever thread waits pumps the
sockets (one at a time, the others wait on a condition), so the blocking client
works inside a running event loop and leaves no thread behind. :class:`AsyncEngine`
reads the sockets from the asyncio loop's reader callbacks. Both feed the same
:class:`~kernelwire.client.routing.Router`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

import zmq

from ..errors import ClientClosed, KernelDied, KernelTimeout, ProtocolError, ReplyLost
from ..protocol import requests
from ..protocol.codec import Session
from ..protocol.connection import ChannelName, ConnectionInfo
from ..protocol.message import Channel, Message
from ..transports.zmq import LOST_AFTER, ZmqTransport
from .heartbeat import Heartbeat
from .routing import MAX_UNCLAIMED, Router, iopub_joined

log = logging.getLogger("kernelwire.engine")

T = TypeVar("T")
P = ParamSpec("P")
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
"""Messages larger than this (all frames together) are refused; ``None`` on an engine lifts it."""
IOPUB_JOIN_WAIT = 0.25
"""Seconds the first request waits for ``iopub_welcome``: without it a fresh subscriber may
miss the request's first IOPub messages (ZeroMQ's slow joiner). Kernels that send the
welcome (protocol 5.5, ipykernel 7, xeus) answer in milliseconds."""
IOPUB_PROBE_LIMIT = 0.5
"""Seconds the first request waits at most for IOPub to show it is subscribed. With no
welcome within IOPUB_JOIN_WAIT (an older kernel sends none, a loaded one sends it late),
the client asks with a ``kernel_info`` probe, whose IOPub statuses show it. Short, since
the request's own timeout only starts after it."""
LIVENESS_INTERVAL = 0.2
"""Seconds between liveness checks (process exit) while someone waits."""
SEND_RETRY_INTERVAL = 0.02
"""Seconds between tries of a message ZeroMQ could not take (no peer yet, or a full queue)."""
MONITOR_INTERVAL = 0.2
"""Seconds between the blocking engine's looks at the connection monitors (dropped?)."""
ON_DEMAND_CHANNELS: tuple[ChannelName, ...] = ("control", "stdin")
"""Channels that carry only answers to our own control requests and to executes that allow
stdin: the blocking engine polls them once one is sent, or once someone asks for their
messages. Every socket in a poll costs each round trip a little."""
ALL_CHANNELS: tuple[ChannelName, ...] = ("shell", "iopub", "stdin", "control", "hb")
DROPPABLE_CHANNELS: tuple[ChannelName, ...] = ("shell", "control", "stdin")
"""Channels whose connection ZeroMQ gives up after refusing an oversized message."""
_MESSAGE_CHANNELS = ("shell", "iopub", "stdin", "control")


class EngineBase:
    """What both engines share: decoding frames into the router, heartbeat judgement."""

    def __init__(
        self,
        info: ConnectionInfo,
        session: Session,
        *,
        channels: Iterable[ChannelName] = ALL_CHANNELS,
        context: zmq.Context[Any] | None = None,
        heartbeat: Heartbeat | None = None,
        max_unclaimed: int | None = MAX_UNCLAIMED,
    ) -> None:
        self.info = info
        self.session = session
        self.router = Router(max_unclaimed)
        self.heartbeat = heartbeat or Heartbeat()
        self.transport = ZmqTransport(
            info, session.bsession, channels, context, max_frame_bytes=MAX_MESSAGE_BYTES
        )
        self.closed = False
        self.iopub_drop_expected = False
        """Set by whoever stops the kernel on purpose (restart, shutdown): the next IOPub
        drop is that stop, reconnected quietly, not a loss to warn about."""
        self.max_message_bytes: int | None = MAX_MESSAGE_BYTES
        # How long the first request waits for IOPub's welcome (ZeroMQ's slow joiner).
        self.iopub_join_wait = IOPUB_JOIN_WAIT
        # Extra death checks (e.g. "has the kernel process exited?"), run every
        # LIVENESS_INTERVAL while someone waits.
        self.liveness_checks: list[Callable[[], KernelDied | None]] = []
        self._liveness_due = 0.0

    def _ingest(self, channel: ChannelName, batch: list[list[bytes]]) -> None:
        """Decode and route a batch of frames read from ``channel``."""
        if channel == "hb":
            now = time.monotonic()
            for frames in batch:
                self.heartbeat.pong(frames[-1], now)
            return
        decode = self.session.decode
        dispatch = self.router.dispatch
        own_session = self.session.session_id
        limit = self.max_message_bytes
        for frames in batch:
            try:
                if limit is not None and sum(map(len, frames)) > limit:
                    raise ProtocolError(f"oversized message: more than {limit} bytes")
                msg = decode(frames)[1]
                if channel != "iopub":
                    # Replies and input requests answer *our* requests: another session's
                    # are not for us (IOPub is a broadcast and carries every session's).
                    session = msg["parent_header"].get("session")
                    if session is not None and session != own_session:
                        raise ProtocolError(f"reply to another session ({session!r})")
            except ProtocolError as exc:
                self.router.rejected += 1
                log.warning("refused a message on the %s channel: %s", channel, exc)
                continue
            dispatch(channel, msg)
            if channel != "iopub":
                # A verified answer to us: the kernel is up, past its start-up.
                self.heartbeat.answered = True

    def has_channel(self, channel: ChannelName) -> bool:
        """Whether ``channel`` is open on this engine."""
        return channel in self.transport.sockets

    def watch(self, channel: ChannelName) -> None:
        """Make sure ``channel``'s messages are read (engines that read all, always do)."""

    def wake(self) -> None:
        """Make a thread blocked in :meth:`pump` (if any) return soon."""

    def run_anywhere(self, func: Callable[[], object]) -> None:
        """Call ``func`` (which changes router or engine state) from any thread, where
        this engine's state may be changed, and let waiters look again."""
        raise NotImplementedError

    def fail_pending(self, error: KernelDied) -> None:
        """Fail every request still waiting with ``error`` (their kernel was restarted
        under them), from any thread: their waits raise it promptly (see
        :meth:`Router.fail_pending <kernelwire.client.routing.Router.fail_pending>`)."""
        self.run_anywhere(lambda: self.router.fail_pending(error))

    def expect_restart(self) -> None:
        """The kernel is about to be restarted on the same connection info (call from any
        thread, before the old process stops): its IOPub drop is no loss to warn about,
        and IOPub is joined again before the next request, on a message of the new
        process (it drops what it publishes before our subscription reaches it)."""
        self.run_anywhere(self._expect_restart)

    def _expect_restart(self) -> None:
        self.iopub_drop_expected = True
        self.router.rejoin_iopub()
        self.iopub_join_wait = IOPUB_JOIN_WAIT

    def reset_after_restart(self) -> None:
        """The kernel was restarted (call from any thread, once the new process is up):
        forget the old one's death and heartbeat."""
        self.run_anywhere(self._reset_after_restart)

    def _reset_after_restart(self) -> None:
        self.router.death = None
        self.heartbeat.reset()

    def _iopub_dropped(self) -> None:
        self.router.iopub_resets += 1
        if self.iopub_drop_expected:
            self.iopub_drop_expected = False
            log.debug(
                "the IOPub connection to %s dropped as its kernel stopped", self.info.url("iopub")
            )
            return
        log.warning(
            "the IOPub connection to %s dropped (the kernel died or restarted, or ZeroMQ "
            "refused a message over %s bytes): reconnected; output sent meanwhile is lost",
            self.info.url("iopub"),
            self.max_message_bytes,
        )

    def _health_wait(self, now: float) -> float:
        """Seconds until the next health check is due."""
        wait = self.heartbeat.next_deadline(now) if self.has_channel("hb") else 1.0
        return min(wait, LIVENESS_INTERVAL) if self.liveness_checks else wait

    def _heartbeat_tick(self, now: float) -> None:
        if self.router.death is not None:
            return
        if self.liveness_checks and now >= self._liveness_due:
            self._liveness_due = now + LIVENESS_INTERVAL  # a system call each: not per message
            for check in self.liveness_checks:
                death = check()
                if death is not None:
                    self.router.mark_dead(death)
                    return
            self.heartbeat.process_alive(now)  # the process check outweighs a missed ping
        if not self.has_channel("hb"):
            return
        heartbeat = self.heartbeat
        if heartbeat.dead(now):
            where = self.info.url("hb")
            if heartbeat.suspect_until is not None:
                why = (
                    f"kernel at {where} closed its heartbeat connection and did not answer "
                    f"within {heartbeat.disconnect_grace:g} s (its process is gone?)"
                )
            else:
                why = f"kernel at {where} stopped answering its heartbeat for "
                why += f"{heartbeat.time_to_dead:g} s"
            self.router.mark_dead(KernelDied(why))
            return
        ping = heartbeat.due(now)
        if ping is not None and not self.transport.send("hb", [b"", ping]):
            heartbeat.unsent(now)  # no connection (yet): the verdict's clock keeps running

    def _check_connections(self, now: float) -> tuple[list[ChannelName], list[ChannelName]]:
        """Read the connection monitors: (the channels whose connection ZeroMQ gave up,
        the channels whose sockets must be replaced).

        IOPub is replaced whenever its connection dropped. Shell, control and stdin are
        replaced when ZeroMQ gave theirs up (see :meth:`ZmqTransport.given_up`), under a
        new identity (see :meth:`ZmqTransport.renew_identity`); shell and stdin together,
        since the kernel sends an ``input_request`` to the identity that sent the
        ``execute_request``.
        """
        transport = self.transport
        if transport.was_disconnected("hb"):
            self.heartbeat.disconnected(now)
        lost = [channel for channel in DROPPABLE_CHANNELS if transport.given_up(channel, now)]
        replace: list[ChannelName] = []
        if lost:
            transport.renew_identity()
            paired = {"shell", "stdin"} & set(lost)
            replace = [
                channel
                for channel in DROPPABLE_CHANNELS
                if self.has_channel(channel)
                and (channel in lost or (paired and channel in ("shell", "stdin")))
            ]
        if transport.was_disconnected("iopub"):
            replace.append("iopub")
        return lost, replace

    def _replaced(self, lost: list[ChannelName], replaced: list[ChannelName]) -> None:
        """Account for replaced sockets (under the routing lock): what the kernel sends for
        a request made before goes to the old identity, so each such request waiting for
        its answer on a replaced channel fails now, rather than at its timeout."""
        if "iopub" in replaced:
            self._iopub_dropped()
        renewed = [channel for channel in replaced if channel != "iopub"]
        if not renewed:
            return
        bound = self.max_message_bytes
        dropped, again = " and ".join(lost), " and ".join(renewed)
        log.warning(
            "ZeroMQ dropped the %s connection to %s, as it does when a message is over the "
            "size bound (%s bytes): %s reconnected under a new identity; the requests that "
            "waited for an answer there fail",
            dropped,
            self.info.url(lost[0]),
            bound,
            again,
        )
        for state in list(self.router.pending.values()):
            if state.reply is not None or not state.expects_reply:
                continue
            uses_stdin = state.msg_type == "execute_request" and "stdin" in state.claims
            if state.channel in renewed or ("stdin" in renewed and uses_stdin):
                state.fail(
                    ReplyLost(
                        f"{state.msg_type} {state.msg_id}: ZeroMQ dropped the {dropped} "
                        f"connection to the kernel, as it does when a message is over the "
                        f"size bound ({bound} bytes, max_message_bytes). The client "
                        f"reconnected {again} under a new identity, so what the kernel "
                        "sends for this request (its reply, an input request) is lost; "
                        "later requests work.",
                        msg_id=state.msg_id,
                        msg_type=state.msg_type,
                    )
                )

    def encode(self, msg: Message) -> list[Any]:
        """Wire frames for ``msg`` under this engine's session."""
        return self.session.encode(msg)

    def probe_frames(self) -> list[Any]:
        """A ``kernel_info_request`` whose answers nobody is shown: its IOPub statuses
        tell that IOPub is subscribed (see :data:`IOPUB_PROBE_LIMIT`)."""
        msg = self.session.request_message(requests.kernel_info())
        self.router.swallowed.add(msg["msg_id"])
        return self.encode(msg)

    def _send_queued(self, queue: deque[tuple[ChannelName, list[Any]]]) -> bool:
        """Send ``queue``'s messages in order until ZeroMQ cannot take one; True if emptied.

        What is left stays at the head of the queue for the next try: a request to a
        peer that is not connected (yet) waits there, and its caller's timeout applies.
        """
        while queue:
            channel, frames = queue[0]
            try:
                if not self.transport.send(channel, frames):
                    return False
            except (zmq.ZMQError, ClientClosed) as exc:
                log.warning("could not send on the %s channel: %s", channel, exc)
            queue.popleft()
        return True


class BlockingEngine(EngineBase):
    """Thread-safe engine where waiting threads take turns pumping the sockets."""

    def __init__(self, info: ConnectionInfo, session: Session, **kwargs: Any) -> None:
        super().__init__(info, session, **kwargs)
        self._cond = threading.Condition()
        self._pump_lock = threading.Lock()
        self._outbox: deque[tuple[ChannelName, list[Any]]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # What one poll waits on: every ZeroMQ socket in it costs each poll system calls,
        # so it holds only the sockets that can have something for us now. The heartbeat
        # is in it while a ping is out; control and stdin once they are used (watch());
        # the IOPub monitor is looked at every MONITOR_INTERVAL instead.
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._poller_lock = threading.Lock()  # other threads add sockets (watch)
        self._socket_channel: dict[Any, ChannelName] = {}
        for channel in ("shell", "iopub"):
            if self.has_channel(channel):
                self._poll_socket(channel)
        self._monitor_due = 0.0

    def _poll_socket(self, channel: ChannelName) -> None:
        sock = self.transport.sockets[channel]
        with self._poller_lock:
            if sock not in self._socket_channel:
                self._socket_channel[sock] = channel
                self._poller.register(sock, zmq.POLLIN)

    def _unpoll_socket(self, sock: Any) -> None:
        """Only the pumping thread removes sockets (a poll in progress keeps its indices)."""
        with self._poller_lock:
            if self._socket_channel.pop(sock, None) is not None:
                self._poller.unregister(sock)

    def _poll_heartbeat(self) -> None:
        sock = self.transport.sockets.get("hb")
        if sock is None:
            return
        if self.heartbeat.outstanding is not None:
            self._poll_socket("hb")
        elif sock in self._socket_channel:
            self._unpoll_socket(sock)

    def watch(self, channel: ChannelName) -> None:
        """Poll ``channel`` from now on (see :data:`ON_DEMAND_CHANNELS`); from any thread."""
        if self.closed or not self.has_channel(channel):
            return
        if self.transport.sockets[channel] in self._socket_channel:
            return
        self._poll_socket(channel)
        self.wake()  # a pump blocked in a poll without this socket polls again

    # -- sending -------------------------------------------------------------------
    def send(self, channel: ChannelName, msg: Message) -> None:
        """Encode and send ``msg`` on ``channel`` (from any thread)."""
        if msg["msg_type"] == "execute_request" and msg["content"].get("allow_stdin"):
            self.watch("stdin")  # its input_request may come
        self.send_frames(channel, self.encode(msg))

    def send_frames(self, channel: ChannelName, frames: list[Any]) -> None:
        """Send already-encoded frames on ``channel`` (from any thread)."""
        if self.closed:
            raise ClientClosed("the client's channels are stopped")
        self.transport.socket(channel)  # fail now, in the caller, if the channel is not open
        if channel in ON_DEMAND_CHANNELS:
            self.watch(channel)  # its answer comes there
        self._outbox.append((channel, frames))
        if self._pump_lock.acquire(blocking=False):
            try:
                self._flush()
            finally:
                self._release_pump()
        else:
            self.wake()

    def wake(self) -> None:
        # A full or closed pipe means the pumper is awake (or gone) anyway.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def _flush(self) -> bool:
        """Send the outbox; False if ZeroMQ refused a message (it stays queued)."""
        # Only the pump lock's holder flushes; other threads only append.
        return self._send_queued(self._outbox)

    def _release_pump(self) -> None:
        refused = False
        while True:
            self._pump_lock.release()
            with self._cond:
                self._cond.notify_all()
            # A sender may have queued frames after our last flush and failed to take the
            # lock. A message ZeroMQ refused waits for the next pump (it retries).
            if refused or not self._outbox or self.closed:
                return
            if not self._pump_lock.acquire(blocking=False):
                return
            refused = not self._flush()

    # -- receiving -----------------------------------------------------------------
    def pump(self, max_wait: float | None) -> None:
        """One round: flush sends, ping, wait up to ``max_wait`` seconds, route what came.

        The caller must hold the pump lock (use :meth:`wait_for`, which does).
        """
        self._flush()
        now = time.monotonic()
        monitored = bool(self.transport.monitors)
        if monitored and now >= self._monitor_due:
            self._monitor_due = now + MONITOR_INTERVAL
            lost, replace = self._check_connections(now)
            if replace:
                self._reconnect(lost, replace)
        self._heartbeat_tick(now)
        self._poll_heartbeat()
        wait = self._health_wait(now)
        if monitored:
            wait = min(wait, MONITOR_INTERVAL)
        if self._outbox:
            wait = min(wait, SEND_RETRY_INTERVAL)
        if max_wait is not None:
            wait = min(wait, max_wait)
        for channel, sock in self.transport.sockets.items():
            if sock.closed:
                raise ClientClosed(f"the {channel} socket of this client was closed under it")
        try:
            events = self._poller.poll(max(0, int(wait * 1000 + 0.999)))
        except zmq.ZMQError as exc:
            raise ClientClosed(
                f"a socket of this client failed ({exc}); stop and reconnect"
            ) from exc
        if self.closed:
            return
        batches: list[tuple[ChannelName, list[list[bytes]]]] = []
        for sock, _ in events:
            if sock == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            channel = self._socket_channel[sock]
            batches.append((channel, self.transport.drain(channel)))
        if batches:
            with self._cond:
                for channel, batch in batches:
                    self._ingest(channel, batch)
                self._cond.notify_all()
        self._flush()
        with self._cond:
            self._heartbeat_tick(time.monotonic())
            if self.router.death is not None:
                self._cond.notify_all()

    def _reconnect(self, lost: list[ChannelName], replace: list[ChannelName]) -> None:
        for channel in replace:
            old = self.transport.sockets.get(channel)
            polled = old in self._socket_channel
            if old is not None:
                self._unpoll_socket(old)
            self.transport.reconnect(channel)
            if polled:
                self._poll_socket(channel)
        with self._cond:
            self._replaced(lost, replace)
            self._cond.notify_all()

    def join_iopub(self) -> None:
        """Before the first request, wait until IOPub is subscribed (ZeroMQ's slow joiner).

        The kernel's welcome says so; without one within the join wait (an older kernel
        sends none, a loaded one sends it late), ``kernel_info`` probes ask for IOPub
        statuses, up to :data:`IOPUB_PROBE_LIMIT` seconds in all. Once per connection:
        later calls return at once.
        """
        if self.iopub_join_wait <= 0 or self.router.iopub_welcomed:
            return
        wait, self.iopub_join_wait = self.iopub_join_wait, 0.0
        if not self.has_channel("iopub"):
            return
        subscribed = iopub_joined(self.router)
        give_up = time.monotonic() + IOPUB_PROBE_LIMIT
        while True:
            try:
                self.wait_for(subscribed, wait)
                return
            except KernelTimeout:
                if time.monotonic() >= give_up:
                    return  # send anyway: as good as it gets
            self.send_frames("shell", self.probe_frames())

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
                result = predicate()
                if result is not None:
                    return result
            if self.closed:
                raise ClientClosed("the client's channels were stopped while waiting")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0 and pumped:
                raise KernelTimeout(f"no answer from the kernel within {timeout:g} s")
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

    def run_anywhere(self, func: Callable[[], object]) -> None:
        """Call ``func`` under the routing lock, from any thread."""
        with self._cond:
            func()
            self._cond.notify_all()
        self.wake()  # the pumping waiter looks again

    def close(self) -> None:
        """Stop the engine: close sockets and the wake pipe; waiters get ClientClosed."""
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


class AsyncEngine(EngineBase):
    """Engine read by the running asyncio loop's reader callbacks (no thread, no polling task)."""

    def __init__(self, info: ConnectionInfo, session: Session, **kwargs: Any) -> None:
        super().__init__(info, session, **kwargs)
        self._set_up_loop_state()

    def _set_up_loop_state(self) -> None:
        """The state of waiting on a loop (engines over other transports call this too)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._fds: list[int] = []
        # Sends held back until IOPub's welcome (or IOPUB_JOIN_WAIT) on a fresh connection.
        self._held: list[tuple[ChannelName, list[Any]]] | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        self._held_until = 0.0
        # Sends ZeroMQ could not take yet, retried in order every SEND_RETRY_INTERVAL.
        self._unsent: deque[tuple[ChannelName, list[Any]]] = deque()
        self._retry_timer: asyncio.TimerHandle | None = None
        self._judge_timer: asyncio.TimerHandle | None = None

    def attach(self) -> asyncio.AbstractEventLoop:
        """Hook the sockets into the running loop (once); returns the loop."""
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
        if self._unsent:
            self._send_unsent()
        loop.call_soon(self._on_readable)
        return loop

    def _add_readers(self) -> None:
        assert self._loop is not None
        for channel, sock in self.transport.sockets.items():
            fd = sock.FD
            # A socket's FD fires for that socket only: read just it.
            self._loop.add_reader(fd, self._on_readable, channel)
            self._fds.append(fd)
        for monitor in self.transport.monitors.values():
            fd = monitor.FD
            self._loop.add_reader(fd, self._on_monitor)
            self._fds.append(fd)
        # A ZeroMQ FD signals only once its socket has been read dry: read the monitors
        # now (as attach() does the sockets), or their events never wake the loop.
        self._loop.call_soon(self._on_monitor)

    def _remove_readers(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for fd in self._fds:
                self._loop.remove_reader(fd)
        self._fds.clear()

    @_loop_callback
    def _on_monitor(self) -> None:
        if self.closed:
            return
        assert self._loop is not None
        now = time.monotonic()
        judging = self.transport.judging
        lost, replace = self._check_connections(now)
        if judging:  # a verdict may have read a socket's EVENTS, consuming its FD's edge
            self._loop.call_soon(self._on_readable)
        if self.transport.judging and self._judge_timer is None:
            self._judge_timer = self._loop.call_later(LOST_AFTER, self._judge)
        if not replace:
            if self.heartbeat.suspect_until is not None and self._timer is not None:
                self._timer.cancel()  # ping the suspect kernel now, judge it in time
                self._tick()
            return
        self._remove_readers()
        for channel in replace:
            self.transport.reconnect(channel)
        self._add_readers()
        self._replaced(lost, replace)
        self._on_readable()
        self._wake_waiters()

    def _judge(self) -> None:
        """A dropped connection's verdict is due (see :meth:`ZmqTransport.given_up`)."""
        self._judge_timer = None
        self._on_monitor()

    @_loop_callback
    def _tick(self) -> None:
        if self.closed or self._loop is None:
            return
        now = time.monotonic()
        self._heartbeat_tick(now)
        # Waiters re-check their predicates: some depend on time (a lost idle) or on death.
        self._wake_waiters()
        # A pong or a new liveness check does not reschedule this timer: never sleep long.
        delay = min(self._health_wait(now), self.heartbeat.interval)
        self._timer = self._loop.call_later(max(delay, 0.01), self._tick)

    @_loop_callback
    def _on_readable(self, channel: ChannelName | None = None) -> None:
        """Read ``channel``'s socket (every socket when ``None``) until it has nothing left."""
        if self.closed:
            return
        got = False
        transport = self.transport
        sockets = transport.sockets
        for name in tuple(sockets) if channel is None else (channel,):
            # Edge-triggered FDs: read until ZeroMQ says nothing is left, which re-arms
            # the FD. drain() stops on exactly that, unless it stopped at its limit.
            while name in sockets:
                batch = transport.drain(name)
                if batch:
                    self._ingest(name, batch)
                    got = True
                if transport.drained:
                    break
        if got:
            if self._held is not None and self.router.iopub_welcomed:
                self._release_held()
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def send(self, channel: ChannelName, msg: Message) -> None:
        """Encode and send ``msg`` on ``channel`` (from the loop's thread)."""
        self.send_frames(channel, self.encode(msg))

    def send_frames(self, channel: ChannelName, frames: list[Any]) -> None:
        """Send encoded frames; re-checks the sockets after (ZeroMQ resets the FD edge on send)."""
        if self.closed:
            raise ClientClosed("the client's channels are stopped")
        if self._held is None and self._should_hold(channel):
            self._hold()
        if self._held is not None:
            self._held.append((channel, frames))  # sent, in order, once IOPub is joined
            return
        self._send_in_order([(channel, frames)])

    def _send_in_order(self, messages: list[tuple[ChannelName, list[Any]]]) -> None:
        """Send ``messages`` after any still unsent, in order."""
        self._unsent.extend(messages)
        if self._retry_timer is None:  # else the timer's next try sends them, in order
            self._send_unsent()

    def _send_unsent(self) -> None:
        self._retry_timer = None
        if self.closed:
            return
        unsent = self._unsent
        # A send can consume a socket's FD edge: re-read the sockets sent on.
        sent_on = unsent[0][0] if len(unsent) == 1 else None
        if not self._send_queued(unsent) and self._loop is not None:
            # Without a loop yet, attach() tries again.
            self._retry_timer = self._loop.call_later(SEND_RETRY_INTERVAL, self._send_unsent)
        if self._loop is not None:
            self._loop.call_soon(self._on_readable, sent_on)

    def _hold(self) -> None:
        """Hold what is sent from now until IOPub is joined (probing, up to the limit)."""
        loop = self.attach()
        self._held = []
        self._held_until = time.monotonic() + IOPUB_PROBE_LIMIT
        self._held_timer = loop.call_later(self.iopub_join_wait, self._held_timeout)

    async def join_iopub(self, timeout: float | None = None) -> None:
        """Wait until IOPub is subscribed, as the first request would (once per connection).

        Returns once the kernel's welcome (or any IOPub message) has arrived, or after
        ``kernel_info`` probes for up to :data:`IOPUB_PROBE_LIMIT` seconds without one.
        """
        if self._held is None:
            if not self._should_hold("shell"):
                return
            self._hold()
        await self.wait_for(lambda: True if self._held is None else None, timeout)

    def _should_hold(self, channel: ChannelName) -> bool:
        if self.iopub_join_wait <= 0 or channel == "stdin" or self.router.iopub_welcomed:
            return False
        if not self.has_channel("iopub"):
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False  # no loop to wait on: send at once
        return True

    def _held_timeout(self) -> None:
        """No sign of IOPub yet: probe, and look again a join wait later (up to the limit)."""
        self._held_timer = None
        if self.closed or self._held is None:
            return
        if self.router.iopub_welcomed or time.monotonic() >= self._held_until:
            self._release_held()
            return
        assert self._loop is not None
        self.transport.send("shell", self.probe_frames())  # not held: it is the question
        self._loop.call_soon(self._on_readable, "shell")
        self._held_timer = self._loop.call_later(self.iopub_join_wait, self._held_timeout)

    def _release_held(self) -> None:
        self.iopub_join_wait = 0.0  # once per connection
        held, self._held = self._held, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._wake_waiters()  # join_iopub() waits for this
        if not held or self.closed:
            return
        self._send_in_order(held)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float | None) -> T:
        """Wait until ``predicate()`` returns non-None; :class:`KernelTimeout` after ``timeout``."""
        loop = self.attach()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            result = predicate()
            if result is not None:
                return result
            if self.closed:
                raise ClientClosed("the client's channels were stopped while waiting")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                self._on_readable()  # read once what is already waiting
                result = predicate()
                if result is not None:
                    return result
                raise KernelTimeout(f"no answer from the kernel within {timeout:g} s")
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            handle = None if remaining is None else loop.call_later(remaining, _resolve, fut)
            try:
                await fut
            finally:
                if handle is not None:
                    handle.cancel()

    def run_locked(self, func: Callable[[], T]) -> T:
        """Call ``func`` (one thread only: no lock needed)."""
        return func()

    def run_anywhere(self, func: Callable[[], object]) -> None:
        """Call ``func`` on the loop's thread (at once if this is it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and _running_loop() is not loop:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nobody waits there
                loop.call_soon_threadsafe(self.run_anywhere, func)
                return
        func()
        self._wake_waiters()

    def close(self) -> None:
        """Detach from the loop and close the sockets; waiters get ClientClosed."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for timer in (self._held_timer, self._retry_timer, self._judge_timer):
            if timer is not None:
                timer.cancel()
        self._unsent.clear()
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
