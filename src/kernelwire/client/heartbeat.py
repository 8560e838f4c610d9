"""Heartbeat bookkeeping, sans-I/O: when to ping, and when the kernel counts as dead.

The driver (blocking or asyncio) sends what :meth:`Heartbeat.due` asks for, says when
it could not (:meth:`Heartbeat.unsent`), feeds pongs back with :meth:`Heartbeat.pong`
and asks :meth:`Heartbeat.dead` for the verdict. A false death is worse than a late
one (a kernel that is alive must never be reported dead), so the verdict counts only
what is evidence:

- Only time spent connected. The heartbeat socket queues a ping only to a connected
  kernel (ZeroMQ's ``immediate``), so a kernel that is still starting, or whose
  handshake fails, has no ping out and is never judged; the caller's timeout applies.
- Only time the driver was looking. A gap between looks longer than ``max_gap`` (the
  client starved of CPU, or nobody waiting: a blocking client reads only while someone
  waits) or time paused is not held against the kernel: its pong may have been sitting
  unread all along.
- A verdict is confirmed at the next look, after the driver has read the socket once
  more, so a pong that arrived unread is never taken for silence.
- A kernel that has not answered once on this connection (no pong, no reply) is still starting (an
  interpreter importing its modules on a loaded machine: xeus-python took over 3 s to
  answer its first ping at a load average of 13 on 2 cores): its ping is judged after
  ``first_answer_grace`` seconds, not ``time_to_dead``.
- A local process check outweighs the heartbeat: while the driver reports the kernel's
  process alive (:meth:`Heartbeat.process_alive`), a missed ping is not death.
- A dropped connection (the kernel's process closed its sockets) makes the kernel
  *suspect*: dead unless a connection is back within ``disconnect_grace`` seconds. A
  ping ZeroMQ takes proves one is (a kernel listens on the port again, as after a
  restart): from then on the ping is judged by ``time_to_dead`` like any other.
"""

from __future__ import annotations

import itertools

DISCONNECT_GRACE = 0.5
"""Seconds a kernel whose heartbeat connection dropped has to be listening again."""
RETRY_INTERVAL = 0.02
"""Seconds between tries of a ping that could not be sent (no connection yet, or any more):
soon after a connection comes up, a ping is out, and its pong in by the next read."""
MAX_GAP = 1.0
"""Seconds between two looks beyond which the time between them does not count. The
engines look at least every ping interval (0.5 s) while someone waits."""
PROCESS_CHECK_FRESH = 1.0
"""Seconds a report that the kernel's process is alive keeps the heartbeat from judging.
The engines check the process every 0.2 s while someone waits."""


FIRST_ANSWER_GRACE = 30.0
"""Seconds a kernel that has never answered on this connection has before its silence
counts (at least ``time_to_dead``): until its first pong it is taken to be starting."""


class Heartbeat:
    """One outstanding ping at a time; pings every ``interval`` seconds while looked at.

    A ping unanswered for ``time_to_dead`` seconds of connected, attentive time means the
    kernel is dead (or hung); see the module's docstring for what is not counted.
    """

    def __init__(
        self,
        interval: float = 0.5,
        time_to_dead: float = 3.0,
        disconnect_grace: float = DISCONNECT_GRACE,
        first_answer_grace: float = FIRST_ANSWER_GRACE,
    ) -> None:
        if interval <= 0 or time_to_dead <= 0 or disconnect_grace <= 0:
            raise ValueError("heartbeat interval, time_to_dead and grace must be positive")
        self.interval = interval
        self.time_to_dead = time_to_dead
        self.disconnect_grace = disconnect_grace
        self.first_answer_grace = max(first_answer_grace, time_to_dead)
        self.answered = False
        """Whether the kernel has answered since the start or the last reset: a ping, or
        (set by the engines) a verified reply on another channel."""
        self.max_gap = max(MAX_GAP, 2 * interval)
        self._counter = itertools.count(1)
        self.outstanding: bytes | None = None
        self.sent_at = 0.0
        self.last_pong = float("-inf")
        self.paused = False
        self.suspect_until: float | None = None
        """When a suspect kernel that has not answered counts as dead (``None``: not suspect)."""
        self._retry_at = 0.0
        self._last_look: float | None = None
        self._overdue_since: float | None = None
        self._lifted: float | None = None  # suspicion lifted by a ping that may prove unsent
        self._process_alive_at = float("-inf")

    def _look(self, now: float) -> None:
        """Account for the time since the last look: a stall or a pause does not count."""
        last, self._last_look = self._last_look, now
        if last is None or now <= last:
            return
        gap = now - last
        if gap <= self.max_gap and not self.paused:
            return
        if self.outstanding is not None:
            self.sent_at += gap
        if self.suspect_until is not None:
            self.suspect_until += gap
        self._overdue_since = None

    def due(self, now: float) -> bytes | None:
        """A ping payload to send now, or ``None``."""
        self._look(now)
        self._lifted = None
        if self.paused or self.outstanding is not None or now < self._retry_at:
            return None
        if self.suspect_until is None and now - self.last_pong < self.interval:
            return None
        self.outstanding = b"%d" % next(self._counter)
        self.sent_at = now
        # Taken by ZeroMQ, the ping proves a connection: unsent() puts suspicion back if not.
        self._lifted, self.suspect_until = self.suspect_until, None
        return self.outstanding

    def unsent(self, now: float) -> None:
        """The ping from :meth:`due` could not be sent (no connection): retry later."""
        self.outstanding = None
        if self._lifted is not None:
            self.suspect_until = self._lifted
            self._lifted = None
        self._retry_at = now + RETRY_INTERVAL

    def disconnected(self, now: float) -> None:
        """The heartbeat connection dropped: the ping in flight is lost; ping again now."""
        self._look(now)
        deadline = now + self.disconnect_grace
        if self.suspect_until is None or deadline < self.suspect_until:
            self.suspect_until = deadline
        self.outstanding = None
        self._retry_at = 0.0
        self._overdue_since = None
        self._lifted = None

    def pong(self, payload: bytes, now: float) -> None:
        """Record an echo of ``payload``."""
        if payload == self.outstanding:
            self.outstanding = None
            self.last_pong = now
            self.answered = True
            self.suspect_until = None
            self._overdue_since = None

    def process_alive(self, now: float) -> None:
        """A local check found the kernel's process running (or its owner expecting it
        away, as during a restart): missed pings do not count while this is fresh."""
        self._process_alive_at = now

    def beating(self, now: float) -> bool:
        """Whether a pong came within the last ``time_to_dead`` seconds."""
        return now - self.last_pong < self.time_to_dead

    def dead(self, now: float) -> bool:
        """Whether the kernel counts as dead: suspect past its grace, or a ping unanswered
        for ``time_to_dead``, seen at two looks in a row, with no process check vouching."""
        self._look(now)
        if self.paused or now - self._process_alive_at < PROCESS_CHECK_FRESH:
            self._overdue_since = None
            return False
        overdue = (self.suspect_until is not None and now >= self.suspect_until) or (
            self.outstanding is not None and now - self.sent_at >= self._allowed()
        )
        if not overdue:
            self._overdue_since = None
            return False
        if self._overdue_since is None:
            self._overdue_since = now  # judge at the next look, after one more read
            return False
        return now > self._overdue_since

    def _allowed(self) -> float:
        """How long a ping may go unanswered: longer for a kernel still starting."""
        return self.time_to_dead if self.answered else self.first_answer_grace

    def next_deadline(self, now: float) -> float:
        """Seconds until the heartbeat next needs a look (never more than ``interval``)."""
        self._look(now)
        if self.paused:
            return self.interval
        if self._overdue_since is not None:
            return 0.0
        if self.outstanding is not None:
            when = self.sent_at + self._allowed()
        elif self.suspect_until is not None:
            when = self._retry_at  # ping at once, or at the next retry
        else:
            when = max(self.last_pong + self.interval, self._retry_at)
        if self.suspect_until is not None:
            when = min(when, self.suspect_until)
        return min(max(0.0, when - now), self.interval)

    def reset(self) -> None:
        """Forget pings and suspicion (the kernel was restarted on the same connection)."""
        self.answered = False
        self.outstanding = None
        self.suspect_until = None
        self._retry_at = 0.0
        self._last_look = None
        self._overdue_since = None
        self._lifted = None
