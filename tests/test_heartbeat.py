"""The heartbeat's judgement, fed by hand with a fake clock: no socket, no kernel.

A driver here is a few lines: it looks at the heartbeat (``dead``, ``due``,
``next_deadline``) the way the engines do, "sends" a ping when a connection exists,
and delivers pongs when the test says the kernel answered.
"""

from __future__ import annotations

import pytest

from kernelwire.client.heartbeat import (
    DISCONNECT_GRACE,
    PROCESS_CHECK_FRESH,
    RETRY_INTERVAL,
    Heartbeat,
)


class Driver:
    """An engine in miniature: one look = judge, then ping if due (sent if connected)."""

    def __init__(self, heartbeat: Heartbeat, connected: bool = True) -> None:
        self.hb = heartbeat
        self.now = 0.0
        self.connected = connected
        self.sent: list[bytes] = []

    def look(self) -> bool:
        """One pump round; True if the kernel was judged dead."""
        if self.hb.dead(self.now):
            return True
        ping = self.hb.due(self.now)
        if ping is not None:
            if self.connected:
                self.sent.append(ping)
            else:
                self.hb.unsent(self.now)
        return False

    def run(self, seconds: float, step: float = 0.1, answer: bool = False) -> float | None:
        """Look every ``step`` seconds for ``seconds``; the time of death, if any.

        With ``answer``, the kernel echoes every ping at once.
        """
        end = self.now + seconds
        while self.now < end - 1e-9:
            if answer and self.hb.outstanding is not None:
                self.hb.pong(self.hb.outstanding, self.now)
            if self.look():
                return self.now
            self.now += min(step, max(self.hb.next_deadline(self.now), 0.001))
        return None


def healthy(time_to_dead: float = 3.0) -> Driver:
    """A driver whose kernel has answered every ping for a second."""
    driver = Driver(Heartbeat(interval=0.5, time_to_dead=time_to_dead))
    assert driver.run(1.0, answer=True) is None
    return driver


def ping_left_out(driver: Driver) -> bytes:
    """A look that sends a ping an interval later, as a wait that ends right after it."""
    driver.now += 0.6
    driver.look()
    assert driver.hb.outstanding is not None
    return driver.hb.outstanding


def test_a_silent_kernel_is_dead_after_time_to_dead() -> None:
    driver = healthy()
    died = driver.run(10.0)
    assert died is not None
    last_pong = driver.hb.last_pong
    # The first unanswered ping went out an interval after the last pong; the verdict
    # comes time_to_dead after it, confirmed at the next look.
    assert 0.5 + 3.0 <= died - last_pong <= 0.5 + 3.0 + 0.3


def test_an_answering_kernel_is_never_dead() -> None:
    driver = Driver(Heartbeat(interval=0.5, time_to_dead=1.0))
    assert driver.run(60.0, answer=True) is None
    assert driver.hb.beating(driver.now)


def test_a_pong_that_came_while_nobody_looked_is_read_before_the_verdict() -> None:
    """A blocking client reads only while someone waits: a ping left out at the end of
    one wait, answered meanwhile, must not be judged before the socket is read again."""
    driver = healthy()
    hb = driver.hb
    ping = ping_left_out(driver)
    driver.now += 3.5  # nobody waits; the kernel's pong sits unread in the socket
    assert not hb.dead(driver.now)  # the next wait's first look, before its read
    hb.pong(ping, driver.now)  # its read
    assert driver.run(5.0, answer=True) is None


def test_a_client_starved_of_cpu_does_not_count_the_time_it_did_not_run() -> None:
    driver = healthy()
    ping_left_out(driver)
    driver.now += 0.2
    driver.look()
    driver.now += 20.0  # the client did not run for 20 s (a loaded machine)
    back = driver.now
    assert not driver.look()
    driver.now += 0.01
    assert not driver.look()  # still not dead at the confirming look
    # Once it runs again, silence counts again: dead after time_to_dead of it, less the
    # 0.2 s it had counted before the stall.
    died = driver.run(10.0)
    assert died is not None
    assert died - back >= 3.0 - 0.2


def test_the_verdict_is_confirmed_at_the_next_look() -> None:
    hb = Heartbeat(interval=0.5, time_to_dead=1.0, first_answer_grace=0.0)
    ping = hb.due(0.0)
    assert ping is not None
    assert not hb.dead(0.5)
    assert not hb.dead(1.0)  # overdue, first seen
    assert hb.next_deadline(1.0) == 0.0  # look again at once, after a read
    hb.pong(ping, 1.01)  # that read found the pong
    assert not hb.dead(1.01)
    ping = hb.due(1.6)
    assert ping is not None
    assert not hb.dead(2.6)
    assert hb.dead(2.61)


def test_no_ping_is_out_before_the_first_connection_so_a_starting_kernel_never_dies() -> None:
    """A kernel still starting has not bound its heartbeat port: pings are not sent
    (ZeroMQ queues them only to a connected peer), and nothing is judged."""
    hb = Heartbeat(interval=0.5, time_to_dead=1.0)
    driver = Driver(hb, connected=False)
    assert driver.run(30.0) is None
    assert not driver.sent
    retries = driver.hb.next_deadline(driver.now)
    assert retries <= RETRY_INTERVAL
    driver.connected = True  # the kernel binds its port
    assert driver.run(5.0, answer=True) is None
    assert driver.sent


def test_a_dropped_connection_with_nobody_listening_is_death_within_the_grace() -> None:
    driver = healthy()
    dropped_at = driver.now
    driver.hb.disconnected(driver.now)
    driver.connected = False  # the process is gone: nothing listens on the port
    died = driver.run(5.0, step=0.02)
    assert died is not None
    assert DISCONNECT_GRACE <= died - dropped_at <= DISCONNECT_GRACE + 0.1


def test_a_reconnect_after_a_restart_is_not_death() -> None:
    """The kernel's new process listens on the same port: a ping taken by ZeroMQ proves
    it, and from then on the kernel is judged as any other, not by the short grace."""
    driver = healthy()
    hb = driver.hb
    hb.disconnected(driver.now)
    driver.connected = False
    assert driver.run(0.3, step=0.02) is None  # restarting: nothing listens yet
    driver.connected = True  # the new process has bound the port (still importing)
    assert driver.run(2.0, step=0.02) is None  # its pongs are late: not the grace's verdict
    assert hb.suspect_until is None
    assert driver.run(10.0, answer=True) is None


def test_a_stale_disconnect_read_after_the_restart_is_not_death() -> None:
    """The drop of the old process's connection read once the new kernel is up."""
    driver = healthy()
    driver.now += 5.0
    driver.hb.disconnected(driver.now)
    assert driver.run(10.0, answer=True) is None


def test_a_live_process_outweighs_missed_pings_and_a_dropped_connection() -> None:
    driver = healthy(time_to_dead=1.0)
    hb = driver.hb
    end = driver.now + 30.0
    hb.disconnected(driver.now)
    driver.connected = False
    while driver.now < end:
        hb.process_alive(driver.now)  # the engine's process check, every 0.2 s
        assert not driver.look()
        driver.now += 0.2
    # Once the process check stops vouching, the heartbeat judges again.
    died = driver.run(10.0, step=0.02)
    assert died is not None
    assert died - end >= PROCESS_CHECK_FRESH - 0.2


def test_time_paused_does_not_count() -> None:
    driver = healthy(time_to_dead=1.0)
    hb = driver.hb
    ping_left_out(driver)
    hb.paused = True
    assert driver.run(10.0) is None
    hb.paused = False
    resumed = driver.now
    assert not driver.look()
    died = driver.run(10.0)  # the ping's clock resumed where it stopped
    assert died is not None
    assert died - resumed >= 1.0 - 0.1


def test_reset_forgets_pings_and_suspicion() -> None:
    hb = Heartbeat(interval=0.5, time_to_dead=1.0)
    assert hb.due(0.0) is not None
    hb.disconnected(0.1)
    hb.reset()
    assert hb.outstanding is None and hb.suspect_until is None
    assert not hb.dead(100.0)


def test_next_deadline_never_exceeds_the_interval() -> None:
    """The engines sleep at most that long, so a longer gap between looks is a stall."""
    hb = Heartbeat(interval=0.5, time_to_dead=30.0)
    assert hb.due(0.0) is not None
    for now in (0.0, 0.1, 5.0, 29.0):
        assert 0.0 <= hb.next_deadline(now) <= 0.5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(interval=0)


def test_a_kernel_that_never_answered_is_starting_not_dead() -> None:
    """Connected but not answering yet (xeus-python importing on a loaded machine took
    over 3 s to answer its first ping): judged only after the first-answer grace."""
    driver = Driver(Heartbeat(interval=0.5, time_to_dead=1.0, first_answer_grace=10.0))
    assert driver.run(9.0) is None
    assert driver.sent, "pings went out: the kernel is connected"
    assert driver.run(5.0) is not None  # silent past the grace: dead after all


def test_after_the_first_answer_time_to_dead_applies_again_until_a_reset() -> None:
    hb = Heartbeat(interval=0.5, time_to_dead=1.0, first_answer_grace=10.0)
    driver = Driver(hb)
    assert driver.run(1.0, answer=True) is None
    died = driver.run(5.0)
    assert died is not None and died - hb.last_pong <= 0.5 + 1.0 + 0.3
    hb.reset()
    assert not hb.answered
    driver.now += 0.1
    assert driver.run(5.0) is None  # the restarted kernel is starting again
