"""Heartbeat bookkeeping, sans-I/O: when to ping, and when the kernel counts as dead.

The driver (blocking or asyncio) sends what :meth:`Heartbeat.due` asks for and feeds
pongs back with :meth:`Heartbeat.pong`. A ping unanswered for ``time_to_dead``
seconds means the kernel is dead (or hung). Judgement is made only after the
driver has read the socket, so a pong sitting unread never counts as missing.
"""

from __future__ import annotations

import itertools

DISCONNECT_GRACE = 0.5
"""Seconds a kernel whose heartbeat connection dropped has to answer a new ping."""
RETRY_INTERVAL = 0.02
"""Seconds between tries of a ping that could not be sent (no connection)."""


class Heartbeat:
    """One outstanding ping at a time; pings every ``interval`` seconds while pumped.

    A dropped heartbeat connection (the kernel's process closed its sockets: it died or
    is restarting) makes the kernel *suspect*: it is pinged at once and counts as dead
    unless it answers within ``disconnect_grace`` seconds, instead of ``time_to_dead``.
    """

    def __init__(
        self,
        interval: float = 0.5,
        time_to_dead: float = 3.0,
        disconnect_grace: float = DISCONNECT_GRACE,
    ) -> None:
        if interval <= 0 or time_to_dead <= 0 or disconnect_grace <= 0:
            raise ValueError("heartbeat interval, time_to_dead and grace must be positive")
        self.interval = interval
        self.time_to_dead = time_to_dead
        self.disconnect_grace = disconnect_grace
        self._counter = itertools.count(1)
        self.outstanding: bytes | None = None
        self.sent_at = 0.0
        self.last_pong = float("-inf")
        self.paused = False
        self.suspect_until: float | None = None
        """When a suspect kernel that has not answered counts as dead (``None``: not suspect)."""
        self._retry_at = 0.0

    def due(self, now: float) -> bytes | None:
        """A ping payload to send now, or ``None``."""
        if self.paused or self.outstanding is not None or now < self._retry_at:
            return None
        if self.suspect_until is None and now - self.last_pong < self.interval:
            return None
        self.outstanding = b"%d" % next(self._counter)
        self.sent_at = now
        return self.outstanding

    def unsent(self, now: float) -> None:
        """The ping from :meth:`due` could not be sent (no connection): retry shortly."""
        self.outstanding = None
        self._retry_at = now + RETRY_INTERVAL

    def disconnected(self, now: float) -> None:
        """The heartbeat connection dropped: the ping in flight is lost; ping again now."""
        deadline = now + self.disconnect_grace
        if self.suspect_until is None or deadline < self.suspect_until:
            self.suspect_until = deadline
        self.outstanding = None
        self._retry_at = 0.0

    def pong(self, payload: bytes, now: float) -> None:
        """Record an echo of ``payload``."""
        if payload == self.outstanding:
            self.outstanding = None
            self.last_pong = now
            self.suspect_until = None

    def beating(self, now: float) -> bool:
        """Whether a pong came within the last ``time_to_dead`` seconds."""
        return now - self.last_pong < self.time_to_dead

    def dead(self, now: float) -> bool:
        """Whether the kernel counts as dead: suspect past its grace, or a ping unanswered
        for ``time_to_dead``."""
        if self.paused:
            return False
        if self.suspect_until is not None and now >= self.suspect_until:
            return True
        return self.outstanding is not None and now - self.sent_at >= self.time_to_dead

    def next_deadline(self, now: float) -> float:
        """Seconds until the heartbeat next needs attention."""
        if self.paused:
            return self.interval
        if self.outstanding is not None:
            when = self.sent_at + self.time_to_dead
        elif self.suspect_until is not None:
            when = self._retry_at  # ping at once, or at the next retry
        else:
            when = max(self.last_pong + self.interval, self._retry_at)
        if self.suspect_until is not None:
            when = min(when, self.suspect_until)
        return max(0.0, when - now)

    def reset(self) -> None:
        """Forget pings and suspicion (the kernel was restarted on the same connection)."""
        self.outstanding = None
        self.suspect_until = None
        self._retry_at = 0.0
