"""The routing engine: every incoming message goes to the request that caused it.

:class:`Router` is pure bookkeeping, shared by every client (blocking, asyncio,
callback); the clients only differ in how they wait. A message whose
``parent_header.msg_id`` names a tracked request goes to that request's
:class:`RequestState`; every other message is kept, in order, in the channel's
unclaimed queue, where ``get_iopub_msg()`` and friends find it. Nothing is dropped
because another request was being waited for.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import KernelDied, KernelwireError, ReplyLost
from ..protocol.message import CHANNELS, Channel, Message

log = logging.getLogger("kernelwire.routing")

Sink = Callable[[Channel, Message], None]
REPLY_CHANNELS = ("shell", "control")
"""The channels replies come on."""


IDLE_GRACE = 4.0
"""Seconds to wait for a request's IOPub ``idle`` once its reply is in (as nbclient does)."""
MAX_UNCLAIMED = 10_000
"""The default bound of each channel's queue of messages no request claimed (what
``get_iopub_msg()`` and friends read). Past it the oldest is dropped, counted and warned
about. ``bench/memory.py``: a million tiny IOPub messages nobody reads leave the client
43 MB larger with this bound, 2 GB larger without. A reader that keeps up never comes
near it, while a program that never reads IOPub (jupyter_client style: ``execute()``,
then only shell replies) keeps its last few thousand requests' outputs instead of
growing for ever."""
REPLY_GRACE = 4.0
"""Seconds to wait for a request's reply once its IOPub ``idle`` is in. A kernel sends the
reply before the idle, but on another connection, so the idle may arrive first; past this
the reply is lost (ipykernel drops ``execute_reply`` in interrupt storms, still sending the
idle) and the request ends with :class:`~kernelwire.errors.ReplyLost`, not at its timeout."""


def _split_id(msg_id: str) -> tuple[str, int | None]:
    """``<prefix>_<n>`` as (prefix, n); n is ``None`` for an id of another form."""
    prefix, _, number = msg_id.rpartition("_")
    if not (number.isascii() and number.isdigit()) or len(number) > 12:
        return msg_id, None
    return prefix, int(number)


def is_idle(msg: Message) -> bool:
    """Whether ``msg`` is an IOPub ``status: idle``."""
    return bool(msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle")


def iopub_joined(router: Router) -> Callable[[], bool | None]:
    """A predicate: IOPub is subscribed (its welcome, or any IOPub message, has arrived).

    It raises :class:`KernelDied` once the kernel is known dead.
    """

    def joined() -> bool | None:
        if router.iopub_welcomed:
            return True
        router.check_alive()
        return None

    return joined


class RequestState:
    """What has arrived so far for one request: reply, IOPub and stdin messages, in order.

    ``events`` holds ``(channel, message)`` pairs not yet consumed. ``done`` turns true
    when the reply (if one is expected) and the IOPub ``idle`` have both arrived.
    """

    __slots__ = (
        "channel",
        "claims",
        "error",
        "events",
        "expects_reply",
        "idle",
        "idle_at",
        "incomplete",
        "iopub_at",
        "msg_id",
        "msg_type",
        "reply",
        "reply_at",
        "reply_type",
        "sink",
    )

    def __init__(self, msg_id: str, msg_type: str, channel: Channel, sink: Sink | None = None):
        self.msg_id = msg_id
        self.msg_type = msg_type
        self.channel = channel
        self.expects_reply = msg_type.endswith("_request")
        self.reply_type = msg_type[: -len("_request")] + "_reply" if self.expects_reply else None
        """The only message type that answers this request on shell or control."""
        self.reply: Message | None = None
        self.reply_at = 0.0
        self.idle = False
        self.idle_at = 0.0
        """When the IOPub ``idle`` came (claimed or not); 0 before."""
        self.incomplete = False
        self.iopub_at = 0.0
        """When this request's last IOPub message came; 0 before."""
        self.error: KernelwireError | None = None
        """Why this request ended without its reply (its waiters raise it), if it did."""
        self.events: deque[tuple[Channel, Message]] = deque()
        self.sink = sink
        self.claims: frozenset[Channel] = frozenset(CHANNELS)

    @property
    def done(self) -> bool:
        """Reply (when expected) and ``status: idle`` both received."""
        return (self.idle or self.incomplete) and (self.reply is not None or not self.expects_reply)

    def give_up_on_idle(self, grace: float) -> bool:
        """Mark the request ``incomplete`` if its reply came ``grace`` seconds ago, no IOPub
        message of it came since, and its ``idle`` never did (lost across a reset
        connection): waiting longer would hang.

        The time counts from the later of the two: the reply overtakes IOPub when a large
        output is still being read (1 GiB of stream read through ``run()`` came in 4 s
        after its reply on a loaded machine), and output still arriving is no loss.
        """
        if self.idle or self.reply is None or self.incomplete:
            return self.incomplete
        if time.monotonic() - max(self.reply_at, self.iopub_at) < grace:
            return False
        self.incomplete = True
        log.warning(
            "no IOPub idle for %s %s within %g s of its reply and its last output: "
            "its output may be incomplete",
            self.msg_type,
            self.msg_id,
            grace,
        )
        return True

    def fail(self, error: KernelwireError) -> None:
        """End this request without its reply: its waiters raise ``error`` (the first one
        given), once they have taken what arrived."""
        if self.error is None and not self.done:
            self.error = error

    def raise_if_failed(self) -> None:
        """Raise why this request ended without its reply, if it did.

        A request whose IOPub ``idle`` came :data:`REPLY_GRACE` seconds ago without
        its reply ends here, with :class:`ReplyLost`.
        """
        lost = self.idle_at and self.reply is None and self.expects_reply and self.error is None
        if lost and time.monotonic() - self.idle_at >= REPLY_GRACE:
            self.fail(
                ReplyLost(
                    f"{self.msg_type} {self.msg_id}: the kernel went idle and sent no "
                    f"{self.reply_type} within {REPLY_GRACE:g} s; it will not come (the "
                    "request's output before the idle was delivered)",
                    msg_id=self.msg_id,
                    msg_type=self.msg_type,
                )
            )
            log.warning("%s", self.error)
        if self.error is not None:
            raise self.error

    def add(self, channel: Channel, msg: Message) -> None:
        """Record ``msg`` received on ``channel``."""
        if channel == "iopub":
            self.iopub_at = time.monotonic()
            if is_idle(msg):
                self.idle = True
                self.idle_at = self.iopub_at
        elif channel in ("shell", "control") and self.reply is None:
            self.reply = msg
            self.reply_at = time.monotonic()
        if self.sink is not None:
            self.sink(channel, msg)
        else:
            self.events.append((channel, msg))


class Router:
    """Routes decoded messages to tracked requests or to per-channel unclaimed queues.

    ``max_unclaimed`` bounds each unclaimed queue (``None``: unbounded); when a bound
    is hit the oldest message is dropped and counted in ``dropped`` (in all) and
    ``dropped_from`` (per channel), with a warning.
    """

    def __init__(self, max_unclaimed: int | None = MAX_UNCLAIMED) -> None:
        self.pending: dict[str, RequestState] = {}
        self.unclaimed: dict[Channel, deque[Message]] = {ch: deque() for ch in CHANNELS}
        self.max_unclaimed = max_unclaimed
        self.dropped = 0
        self.dropped_from: dict[Channel, int] = dict.fromkeys(CHANNELS, 0)
        self.rejected = 0
        self.received = 0
        self.received_on: dict[Channel, int] = dict.fromkeys(CHANNELS, 0)
        """Messages read per channel (refused ones included)."""
        self.death: KernelDied | None = None
        self.iopub_welcomed = False
        """IOPub is known to be subscribed: its welcome, or any IOPub message, has come."""
        self.kernel_session: object = None
        """The session id in the kernel's last IOPub message header (one per process)."""
        self._stale_session: object = None
        self.swallowed: set[str] = set()
        """Our own probe requests, whose replies and outputs nobody is shown."""
        self.iopub_resets = 0
        self.listeners: list[Sink] = []
        self.unclaimed_sink: Sink | None = None
        self._answered_bits: dict[str, bytearray] = {}

    def track(
        self, msg_id: str, msg_type: str, channel: Channel, sink: Sink | None = None
    ) -> RequestState:
        """Start routing messages whose parent is ``msg_id`` to a new :class:`RequestState`."""
        state = RequestState(msg_id, msg_type, channel, sink)
        self.pending[msg_id] = state
        prefix, number = _split_id(msg_id)
        if number is not None:  # room for its bit (see _answered); ids are ours, not the peer's
            bits = self._answered_bits.setdefault(prefix, bytearray())
            if number >= 8 * len(bits):
                bits.extend(bytes(max(number // 8 + 1 - len(bits), len(bits) // 2)))
        return state

    def forget(self, msg_id: str) -> None:
        """Stop routing for ``msg_id``: its unconsumed and later messages become unclaimed."""
        state = self.pending.pop(msg_id, None)
        if state is not None:
            for channel, msg in state.events:
                self._keep(channel, msg)
            state.events.clear()

    def dispatch(self, channel: Channel, msg: Message) -> RequestState | None:
        """Route one message; returns the request that claimed it, if any.

        A reply that cannot be the answer to the request it names is refused and
        counted in ``rejected``: one of another type than the request's reply (a
        protocol violation), or one to a request whose reply already came (a replay,
        however long ago: see :meth:`_answered`).
        """
        self.received += 1
        self.received_on[channel] += 1
        parent = msg["parent_header"]
        parent_id = parent.get("msg_id", "") if parent else ""
        state = self.pending.get(parent_id) if parent_id else None
        if state is not None and channel not in state.claims:
            if channel == "iopub" and is_idle(msg):
                state.idle_at = time.monotonic()  # unclaimed, yet evidence: see REPLY_GRACE
            state = None
        if parent_id and channel in REPLY_CHANNELS:
            refusal = self._refusal(state, parent_id, msg)
            if refusal is not None:
                self.rejected += 1
                log.warning("refused a message on the %s channel: %s", channel, refusal)
                return None
        for listener in self.listeners:
            listener(channel, msg)
        if channel == "iopub":
            session = msg["header"].get("session")
            if session != self._stale_session:
                # Whatever arrived, the subscription is in effect: unless it is the
                # previous kernel's, read late after a restart.
                self.iopub_welcomed = True
                self.kernel_session = session
        if state is not None:
            if channel in REPLY_CHANNELS:
                self._mark_answered(parent_id)
            state.add(channel, msg)
            return state
        if parent_id in self.swallowed:
            return None
        if channel == "iopub" and msg["msg_type"] == "iopub_welcome":
            return None  # a connection event (protocol 5.5), not output
        self._keep(channel, msg)
        return None

    def _refusal(self, state: RequestState | None, parent_id: str, msg: Message) -> str | None:
        """Why a shell or control message naming ``parent_id`` is no answer to it, if it is not."""
        msg_type = msg["msg_type"]
        if state is not None and msg_type != state.reply_type:
            expected = state.reply_type or "no reply"
            return (
                f"protocol violation: a {msg_type} answered {state.msg_type} {parent_id} "
                f"(only {expected} does)"
            )
        if (state is not None and state.reply is not None) or (
            msg_type.endswith("_reply") and self._answered(parent_id)
        ):
            what = state.msg_type if state is not None else "request"
            return f"replayed {msg_type}: {what} {parent_id} was answered already"
        return None

    def _mark_answered(self, msg_id: str) -> None:
        prefix, number = _split_id(msg_id)
        bits = self._answered_bits.get(prefix)
        if bits is not None and number is not None and number < 8 * len(bits):
            bits[number >> 3] |= 1 << (number & 7)

    def _answered(self, msg_id: str) -> bool:
        """Whether a tracked request ``msg_id`` got its reply, however long ago.

        The replay guard remembers a bounded number of signatures (a window); this
        remembers every tracked request's answer for good, in one bit each: the ids
        kernelwire's sessions make are ``<session>_<pid>_<n>``, and bit ``n`` of its
        prefix's bitmap says whether ``n`` was answered (1 MB covers 8 million requests).
        """
        prefix, number = _split_id(msg_id)
        bits = self._answered_bits.get(prefix)
        if bits is None or number is None or number >= 8 * len(bits):
            return False
        return bool(bits[number >> 3] & (1 << (number & 7)))

    def _keep(self, channel: Channel, msg: Message) -> None:
        if self.unclaimed_sink is not None:
            self.unclaimed_sink(channel, msg)
            return
        queue = self.unclaimed[channel]
        queue.append(msg)
        if self.max_unclaimed is not None and len(queue) > self.max_unclaimed:
            queue.popleft()
            self.dropped += 1
            self.dropped_from[channel] += 1
            dropped = self.dropped_from[channel]
            if dropped == 1 or dropped % 10000 == 0:
                log.warning(
                    "unclaimed %s queue is full (%d): dropped the oldest message (%d so far, "
                    "counted in the client's unclaimed_dropped); read them with get_%s_msg() "
                    "or raise max_unclaimed",
                    channel,
                    self.max_unclaimed,
                    dropped,
                    channel,
                )

    def take_unclaimed(self, channel: Channel) -> Message | None:
        """The oldest unclaimed message of ``channel``, or ``None``."""
        queue = self.unclaimed[channel]
        return queue.popleft() if queue else None

    def mark_dead(self, error: KernelDied) -> None:
        """Record that the kernel died: waits raise ``error`` once queued messages are read."""
        if self.death is None:
            self.death = error

    def reader_stopped(self, reader: str, exc: BaseException) -> KernelDied:
        """Mark the kernel dead because ``reader`` (what reads the sockets) failed with
        ``exc``: every wait then raises the returned error, which says why."""
        error = KernelDied(
            f"{reader} stopped ({type(exc).__name__}: {exc}): this client delivers no more "
            "messages; stop its channels and connect again"
        )
        error.__cause__ = exc
        log.error("%s", error, exc_info=exc)
        self.mark_dead(error)
        return error

    def check_alive(self) -> None:
        """Raise the recorded :class:`KernelDied`, if any."""
        if self.death is not None:
            raise self.death

    def describe(self) -> dict[str, Any]:
        """Counters for diagnostics."""
        return {
            "received": self.received,
            "received_on": dict(self.received_on),
            "rejected": self.rejected,
            "dropped": self.dropped,
            "iopub_resets": self.iopub_resets,
            "pending": len(self.pending),
            "unclaimed": {ch: len(q) for ch, q in self.unclaimed.items()},
        }

    def rejoin_iopub(self) -> None:
        """The kernel is being restarted: IOPub is not subscribed to the new process until
        a message of it comes (the old process's, read late, do not count)."""
        self.iopub_welcomed = False
        self._stale_session = self.kernel_session

    def fail_pending(self, error: KernelDied) -> int:
        """Fail every tracked request not yet done with ``error`` (its kernel was restarted
        under it): waits on it raise ``error`` once its queued messages are read. Returns
        how many requests were failed."""
        failed = 0
        for state in self.pending.values():
            if not state.done and state.error is None:
                state.fail(error)
                failed += 1
        return failed
