"""The client's protocol state, sans-I/O: what both engines decide, and no way of waiting.

:class:`ClientCore` owns the :class:`~kernelwire.client.routing.Router`, the
:class:`~kernelwire.client.heartbeat.Heartbeat` and its verdicts, the liveness-check
schedule, the IOPub join (welcome, probe, give up), the send queue and its retries.
A driver (the blocking or the asyncio engine) feeds it what the transport read
(:meth:`~ClientCore.receive`), lets it send (:meth:`~ClientCore.flush`,
:meth:`~ClientCore.tick`, both given the transport's ``send``), and waits until
:meth:`~ClientCore.next_deadline` or until something is readable. Time is passed in
(``now``), so the core's tests run on a fake clock: no sockets, threads or loop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any, Generic

from ..errors import KernelDied, KernelRestarted, ProtocolError, ReplyLost
from ..protocol import requests
from ..protocol.codec import Session
from ..protocol.connection import ChannelName
from ..protocol.message import Message
from ..transports.base import UnitT, WireCodec
from .heartbeat import Heartbeat
from .routing import MAX_UNCLAIMED, Router

log = logging.getLogger("kernelwire.engine")

Send = Callable[[ChannelName, UnitT], bool]
"""A transport's ``send``: True if the unit was taken, False to try again later."""

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
"""Seconds between tries of a message the transport could not take (no peer yet, or a
full queue)."""
IDLE_TICK = 1.0
"""Seconds between ticks when nothing is due (no heartbeat channel, no checks)."""


class ClientCore(Generic[UnitT]):
    """Protocol state of one client connection; every method is called with the time.

    Not thread-safe by itself: the blocking engine calls it under its locks, the
    asyncio engine from the loop's thread. :meth:`send` alone may be called from
    other threads (it only appends to a deque).
    """

    def __init__(
        self,
        session: Session,
        codec: WireCodec[UnitT],
        channels: Collection[ChannelName],
        *,
        where: Callable[[ChannelName], str] = str,
        heartbeat: Heartbeat | None = None,
        max_unclaimed: int | None = MAX_UNCLAIMED,
        iopub_join_wait: float = IOPUB_JOIN_WAIT,
        server_statuses: bool = True,
    ) -> None:
        self.session = session
        self.codec = codec
        self.channels = frozenset(channels)
        self.where = where
        self.router = Router(max_unclaimed)
        self.heartbeat = heartbeat or Heartbeat()
        self.iopub_join_wait = iopub_join_wait if "iopub" in self.channels else 0.0
        self._rejoin_wait = self.iopub_join_wait  # for a replaced IOPub connection
        # Extra death checks (e.g. "has the kernel process exited?"), run every
        # LIVENESS_INTERVAL while someone waits.
        self.liveness_checks: list[Callable[[], KernelDied | None]] = []
        self._liveness_due = 0.0
        self.outbox: deque[tuple[ChannelName, UnitT]] = deque()
        """Units to send, in order; the head stays until the transport takes it."""
        # While IOPub is joined, sends are held here (None: not joining).
        self.held: list[tuple[ChannelName, UnitT]] | None = None
        self._join_probe_at = 0.0
        self._join_give_up = 0.0
        self.server_statuses = server_statuses
        """Whether IOPub carries a server's statuses of its kernel (a WebSocket does)."""
        self.events: list[str] = []
        """Kernel states a server reported (``restarting``, ``dead``...)."""
        self.iopub_drop_expected = False
        """Set when the kernel is stopped on purpose (restart, shutdown): the next IOPub
        drop is that stop, reconnected quietly, not a loss to warn about."""

    # -- sending -------------------------------------------------------------------
    def send(
        self, channel: ChannelName, msg: Mapping[str, Any], now: float, *, hold: bool = True
    ) -> None:
        """Queue ``msg`` for ``channel``; the first request (not stdin) starts the IOPub
        join, and what is sent during it is held until it ends (unless ``hold`` is off:
        nobody could wait for the join)."""
        unit = self.codec.encode(channel, msg)
        if channel != "stdin" and hold:
            self.start_join(now)
        if self.held is not None and channel != "stdin":
            self.held.append((channel, unit))  # sent, in order, once IOPub is joined
        else:
            self.outbox.append((channel, unit))

    def flush(self, send: Send[UnitT]) -> bool:
        """Send the outbox in order until the transport refuses; True if emptied.

        What is refused stays at the head for the next try: a request to a peer that is
        not connected (yet) waits there, and its caller's timeout applies.
        """
        outbox = self.outbox
        while outbox:
            channel, unit = outbox[0]
            if not send(channel, unit):
                return False
            outbox.popleft()
        return True

    # -- the IOPub join ---------------------------------------------------------------
    def start_join(self, now: float) -> bool:
        """Begin the IOPub join if this connection needs it; True if it began (once per
        IOPub connection)."""
        if self.held is not None or self.iopub_join_wait <= 0 or self.router.iopub_welcomed:
            return False
        self.held = []
        self._join_probe_at = now + self.iopub_join_wait
        self._join_give_up = now + IOPUB_PROBE_LIMIT
        self.iopub_join_wait = 0.0  # once per connection
        return True

    @property
    def joining(self) -> bool:
        """Whether sends are held until IOPub is joined."""
        return self.held is not None

    def join_done(self) -> bool | None:
        """A predicate: the join is over; raises :class:`KernelDied` for a dead kernel."""
        if self.held is None:
            return True
        self.router.check_alive()
        return None

    def _end_join(self) -> None:
        held, self.held = self.held, None
        if held:
            self.outbox.extend(held)

    def _join_tick(self, now: float) -> None:
        if self.router.iopub_welcomed or now >= self._join_give_up:
            self._end_join()  # joined, or as good as it gets: send anyway
        elif now >= self._join_probe_at:
            self.outbox.append(("shell", self.probe()))  # not held: it is the question
            self._join_probe_at = now + IOPUB_JOIN_WAIT

    def probe(self) -> UnitT:
        """A ``kernel_info_request`` whose answers nobody is shown: its IOPub statuses
        tell that IOPub is subscribed (see :data:`IOPUB_PROBE_LIMIT`)."""
        msg = self.session.request_message(requests.kernel_info())
        self.router.swallowed.add(msg["msg_id"])
        return self.codec.encode("shell", msg)

    # -- receiving -------------------------------------------------------------------
    def receive(self, channel: ChannelName, units: list[UnitT], now: float) -> None:
        """Decode and route ``units`` read on ``channel`` (the heartbeat's are pongs)."""
        if channel == "hb":
            for unit in units:
                self.heartbeat.pong(self.codec.pong(unit), now)
            return
        decode = self.codec.decode
        dispatch = self.router.dispatch
        statuses = self.server_statuses
        answered = False
        for unit in units:
            try:
                decoded = decode(channel, unit)
            except ProtocolError as exc:
                self.router.rejected += 1
                log.warning("refused a message on the %s channel: %s", channel, exc)
                continue
            if decoded is None:
                continue  # replayed after a reconnect: delivered already
            if statuses and decoded[0] == "iopub" and decoded[1]["msg_type"] == "status":
                self._server_status(decoded[1])
            dispatch(*decoded)
            answered = answered or decoded[0] != "iopub"
        if answered:
            # A verified answer to us: the kernel is up, past its start-up.
            self.heartbeat.answered = True
        if self.held is not None and self.router.iopub_welcomed:
            self._end_join()

    def _server_status(self, msg: Message) -> None:
        """A Jupyter Server reports its kernel's fate as IOPub statuses of its own."""
        state = msg["content"].get("execution_state")
        if state in ("restarting", "autorestarting", "dead"):
            self.events.append(state)
            log.warning("the kernel behind %s is %s", self.where("shell"), state)
        if state in ("restarting", "autorestarting"):
            # The server restarts a kernel that died (a restart asked for through its API
            # sends no status): what waited for the dead one will not be answered.
            self.router.fail_pending(
                KernelRestarted(
                    f"the kernel at {self.where('shell')} died and the server restarted it:"
                    " the request's answer will not come"
                )
            )
        if state == "dead":
            self.router.mark_dead(
                KernelDied(f"the server reports the kernel at {self.where('shell')} dead")
            )

    # -- time ------------------------------------------------------------------------
    def tick(self, now: float, send: Send[UnitT]) -> None:
        """Run what is due at ``now``: the join's probe or end, liveness checks, the
        heartbeat's verdict and ping."""
        if self.held is not None:
            self._join_tick(now)
        router = self.router
        if router.death is not None:
            return
        if self.liveness_checks and now >= self._liveness_due:
            self._liveness_due = now + LIVENESS_INTERVAL  # a system call each: not per message
            for check in self.liveness_checks:
                death = check()
                if death is not None:
                    router.mark_dead(death)
                    return
            self.heartbeat.process_alive(now)  # the process check outweighs a missed ping
        if "hb" not in self.channels:
            return
        heartbeat = self.heartbeat
        if heartbeat.dead(now):
            router.mark_dead(KernelDied(self._heartbeat_verdict()))
            return
        ping = heartbeat.due(now)
        if ping is not None and not send("hb", self.codec.ping(ping)):
            heartbeat.unsent(now)  # no connection (yet): the verdict's clock keeps running

    def _heartbeat_verdict(self) -> str:
        heartbeat = self.heartbeat
        where = self.where("hb")
        if heartbeat.suspect_until is not None:
            return (
                f"kernel at {where} closed its heartbeat connection and did not answer "
                f"within {heartbeat.disconnect_grace:g} s (its process is gone?)"
            )
        return f"kernel at {where} stopped answering its heartbeat for {heartbeat.time_to_dead:g} s"

    def next_deadline(self, now: float) -> float:
        """Seconds until :meth:`tick` (or a retry of :meth:`flush`) is next due."""
        wait = self.heartbeat.next_deadline(now) if "hb" in self.channels else IDLE_TICK
        if self.liveness_checks:
            wait = min(wait, LIVENESS_INTERVAL)
        if self.outbox:
            wait = min(wait, SEND_RETRY_INTERVAL)
        if self.held is not None:
            wait = min(wait, max(0.0, min(self._join_probe_at, self._join_give_up) - now))
        return wait

    # -- connection events and lifecycle -----------------------------------------------
    def connections_dropped(
        self, channels: Collection[ChannelName], replaced: Collection[ChannelName], now: float
    ) -> None:
        """The connections of ``channels`` dropped, and the driver replaced those of
        ``replaced``: a heartbeat's drop makes the kernel suspect; an IOPub's loses what
        was published meanwhile; a shell, control or stdin one was given up for good
        (ZeroMQ refused a message over the size bound), and what was replaced with it came
        back under a new identity."""
        if "hb" in channels:
            self.heartbeat.disconnected(now)
        bound = getattr(self.codec, "max_bytes", None)
        if "iopub" in channels:
            # The new subscription joins as the first did: the next request waits for it.
            self.router.iopub_welcomed = False
            self.iopub_join_wait = self._rejoin_wait
            self.router.iopub_resets += 1
            if self.iopub_drop_expected:
                self.iopub_drop_expected = False
                log.debug(
                    "the IOPub connection to %s dropped as its kernel stopped", self.where("iopub")
                )
            else:
                log.warning(
                    "the IOPub connection to %s dropped (the kernel died or restarted, or it "
                    "sent a message over %s bytes): reconnected; output sent meanwhile is lost",
                    self.where("iopub"),
                    bound,
                )
        lost = [channel for channel in channels if channel not in ("hb", "iopub")]
        renewed = [channel for channel in replaced if channel not in ("hb", "iopub")]
        if lost and renewed:
            self._replies_lost(lost, renewed, bound)

    def _replies_lost(
        self, lost: list[ChannelName], renewed: list[ChannelName], bound: int | None
    ) -> None:
        """What the kernel sends for a request made before a channel came back under a new
        identity goes to the old one: each request waiting for its answer there fails
        now, rather than at its timeout."""
        dropped, again = " and ".join(lost), " and ".join(renewed)
        log.warning(
            "ZeroMQ dropped the %s connection to %s, as it does when a message is over the "
            "size bound (%s bytes): %s reconnected under a new identity; the requests that "
            "waited for an answer there fail",
            dropped,
            self.where(lost[0]),
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

    def transport_lost(self, why: str) -> None:
        """The transport cannot go on (a reconnect failed): the kernel is out of reach."""
        self.router.mark_dead(KernelDied(f"kernel at {self.where('shell')}: {why}"))

    def mark_dead(self, error: KernelDied) -> None:
        """Record that the kernel died; waits raise ``error`` once queued messages are read."""
        self.router.mark_dead(error)

    def fail_pending(self, error: KernelDied) -> None:
        """Fail every request still waiting with ``error`` (their kernel was restarted
        under them; see :meth:`Router.fail_pending
        <kernelwire.client.routing.Router.fail_pending>`)."""
        self.router.fail_pending(error)

    def pause_liveness(self) -> bool:
        """Stop pinging and judging the heartbeat; returns whether it was paused already."""
        was = self.heartbeat.paused
        self.heartbeat.paused = True
        return was

    def resume_liveness(self, paused: bool = False) -> None:
        """Resume the heartbeat (or leave it ``paused``, as it was before)."""
        self.heartbeat.paused = paused

    def expect_stop(self) -> None:
        """The kernel is about to be stopped on purpose: its IOPub drop is no loss."""
        self.iopub_drop_expected = True

    def expect_restart(self) -> None:
        """The kernel is about to be restarted on the same connection (before the old
        process stops): its IOPub drop is no loss, and IOPub is joined again before the
        next request, on a message of the new process (which drops what it publishes
        before our subscription reaches it; the old one's, read late, do not count)."""
        self.expect_stop()
        self.router.rejoin_iopub()
        self.iopub_join_wait = self._rejoin_wait

    def reset_after_restart(self) -> None:
        """The kernel restarted on the same connection: forget its death and pings."""
        self.router.death = None
        self.heartbeat.reset()
