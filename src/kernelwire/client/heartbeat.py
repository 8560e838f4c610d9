"""Heartbeat bookkeeping, sans-I/O: when to ping, and when the kernel counts as dead.

The driver (blocking or asyncio) sends what :meth:`Heartbeat.due` asks for and feeds
pongs back with :meth:`Heartbeat.pong`. A ping unanswered for ``time_to_dead``
seconds means the kernel is dead (or hung). Judgement is made only after the
driver has read the socket, so a pong sitting unread never counts as missing.
"""

from __future__ import annotations

import itertools


class Heartbeat:
    """One outstanding ping at a time; pings every ``interval`` seconds while pumped."""

    def __init__(self, interval: float = 0.5, time_to_dead: float = 3.0) -> None:
        if interval <= 0 or time_to_dead <= 0:
            raise ValueError("heartbeat interval and time_to_dead must be positive")
        self.interval = interval
        self.time_to_dead = time_to_dead
        self._counter = itertools.count(1)
        self.outstanding: bytes | None = None
        self.sent_at = 0.0
        self.last_pong = float("-inf")
        self.paused = False

    def due(self, now: float) -> bytes | None:
        """A ping payload to send now, or ``None``."""
        if self.paused or self.outstanding is not None:
            return None
        if now - self.last_pong < self.interval:
            return None
        self.outstanding = b"%d" % next(self._counter)
        self.sent_at = now
        return self.outstanding

    def pong(self, payload: bytes, now: float) -> None:
        """Record an echo of ``payload``."""
        if payload == self.outstanding:
            self.outstanding = None
            self.last_pong = now

    def beating(self, now: float) -> bool:
        """Whether a pong came within the last ``time_to_dead`` seconds."""
        return now - self.last_pong < self.time_to_dead

    def dead(self, now: float) -> bool:
        """Whether the outstanding ping has gone unanswered for ``time_to_dead``."""
        return self.outstanding is not None and now - self.sent_at >= self.time_to_dead

    def next_deadline(self, now: float) -> float:
        """Seconds until the heartbeat next needs attention."""
        if self.paused:
            return self.interval
        if self.outstanding is not None:
            return max(0.0, self.sent_at + self.time_to_dead - now)
        return max(0.0, self.last_pong + self.interval - now)
