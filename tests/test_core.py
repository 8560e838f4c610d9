"""The client core fed with frames and a fake clock: no kernel, no socket, no thread.

A fake kernel is a second :class:`Session` with the same key that signs replies; a fake
transport records what the core sends and refuses when told to. Engines are exercised
over a fake transport whose waitable is a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import pytest

from kernelwire.client._core import (
    IOPUB_JOIN_WAIT,
    IOPUB_PROBE_LIMIT,
    LIVENESS_INTERVAL,
    SEND_RETRY_INTERVAL,
    ClientCore,
)
from kernelwire.client.async_client import AsyncKernelClient
from kernelwire.client.blocking import BlockingKernelClient
from kernelwire.client.heartbeat import Heartbeat
from kernelwire.errors import ClientClosed, KernelDied, KernelRestarted, ReplyLost
from kernelwire.protocol import requests
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import ChannelName
from kernelwire.protocol.message import Message
from kernelwire.protocol.websocket import V1_SUBPROTOCOL, encode_v1
from kernelwire.transports.base import Transport
from kernelwire.transports.websocket import WebSocketCodec
from kernelwire.transports.zmq import ZmqCodec

KEY = b"core-test-key"
ALL: tuple[ChannelName, ...] = ("shell", "iopub", "stdin", "control", "hb")


class FakeKernel:
    """Signs messages as a kernel would, in answer to the client's requests."""

    def __init__(self) -> None:
        self.session = Session(KEY, check_replay=False)

    def frames(self, msg_type: str, content: Mapping[str, Any], parent: Message | None) -> Any:
        msg = self.session.message(msg_type, content, parent=parent["header"] if parent else None)
        return self.session.encode(msg)

    def reply(self, request: Message) -> Any:
        msg_type = request["msg_type"].replace("_request", "_reply")
        return self.frames(msg_type, {"status": "ok"}, request)

    def status(self, state: str, parent: Message | None = None) -> Any:
        return self.frames("status", {"execution_state": state}, parent)


class Wire:
    """A fake transport's send: records units, refuses while ``refusing``."""

    def __init__(self) -> None:
        self.sent: list[tuple[ChannelName, Any]] = []
        self.refusing = False

    def __call__(self, channel: ChannelName, unit: Any) -> bool:
        if self.refusing:
            return False
        self.sent.append((channel, unit))
        return True

    def messages(self) -> list[Message]:
        decoder = Session(KEY, check_replay=False)
        return [decoder.decode(unit)[1] for channel, unit in self.sent if channel != "hb"]


def make_core(channels: Collection[ChannelName] = ALL, **kwargs: Any) -> ClientCore:
    session = Session(KEY)
    return ClientCore(session, ZmqCodec(session), channels, **kwargs)


def request(core: ClientCore, req: requests.Request, now: float) -> Message:
    msg = core.session.request_message(req)
    core.router.track(msg["msg_id"], req.msg_type, req.channel)
    core.send(req.channel, msg, now)
    return msg


def welcomed(core: ClientCore, kernel: FakeKernel, now: float = 0.0) -> None:
    core.receive("iopub", [kernel.frames("iopub_welcome", {}, None)], now)


# -- routing -------------------------------------------------------------------------
def test_replies_go_to_their_request_and_the_rest_is_kept_unclaimed() -> None:
    core, kernel, wire = make_core(iopub_join_wait=0), FakeKernel(), Wire()
    first = request(core, requests.execute("1"), 0.0)
    second = request(core, requests.execute("2"), 0.0)
    assert core.flush(wire)
    core.receive("shell", [kernel.reply(second), kernel.reply(first)], 0.0)
    core.receive("iopub", [kernel.status("idle", first), kernel.status("busy")], 0.0)
    states = core.router.pending
    assert states[first["msg_id"]].reply is not None
    assert states[first["msg_id"]].done
    assert states[second["msg_id"]].reply is not None
    assert not states[second["msg_id"]].done  # its idle has not come
    assert [m["msg_type"] for m in core.router.unclaimed["iopub"]] == ["status"]


def test_a_forged_or_foreign_message_is_refused_and_counted() -> None:
    core, kernel = make_core(iopub_join_wait=0), FakeKernel()
    forged = Session(b"other key").encode(Session(b"other key").message("status"))
    stranger = Session(KEY, check_replay=False)
    foreign_parent = stranger.message("execute_request")
    foreign = kernel.frames("execute_reply", {}, foreign_parent)
    core.receive("iopub", [forged], 0.0)
    core.receive("shell", [foreign], 0.0)
    assert core.router.rejected == 2
    assert not core.router.unclaimed["shell"]
    core.codec.max_bytes = 10  # type: ignore[attr-defined]
    core.receive("iopub", [kernel.status("idle")], 0.0)
    assert core.router.rejected == 3


# -- the IOPub join --------------------------------------------------------------------
def test_the_first_request_is_held_until_the_welcome() -> None:
    core, kernel, wire = make_core(), FakeKernel(), Wire()
    msg = request(core, requests.kernel_info(), 0.0)
    assert core.joining
    core.tick(0.01, wire)
    assert core.flush(wire)
    assert wire.sent == [] or all(channel == "hb" for channel, _ in wire.sent)
    welcomed(core, kernel, 0.02)
    assert not core.joining
    assert core.join_done() is True
    core.flush(wire)
    assert [m["msg_id"] for m in wire.messages()] == [msg["msg_id"]]
    # Once per connection: the next request is not held.
    request(core, requests.kernel_info(), 0.03)
    assert not core.joining


def test_without_a_welcome_a_probe_asks_and_its_answers_are_swallowed() -> None:
    core, kernel, wire = make_core(), FakeKernel(), Wire()
    msg = request(core, requests.execute("x"), 0.0)
    assert core.next_deadline(0.0) <= IOPUB_JOIN_WAIT
    core.tick(IOPUB_JOIN_WAIT, wire)
    core.flush(wire)
    (probe,) = wire.messages()
    assert probe["msg_type"] == "kernel_info_request"
    assert probe["msg_id"] in core.router.swallowed
    # The probe's status on IOPub proves the subscription; nobody is shown it.
    core.receive("iopub", [kernel.status("busy", probe)], IOPUB_JOIN_WAIT + 0.01)
    core.receive("shell", [kernel.reply(probe)], IOPUB_JOIN_WAIT + 0.01)
    assert not core.joining
    assert not core.router.unclaimed["iopub"] and not core.router.unclaimed["shell"]
    core.flush(wire)
    assert [m["msg_id"] for m in wire.messages()] == [probe["msg_id"], msg["msg_id"]]


def test_the_join_gives_up_at_the_probe_limit_and_sends_anyway() -> None:
    core, wire = make_core(), Wire()
    msg = request(core, requests.execute("x"), 0.0)
    core.tick(IOPUB_JOIN_WAIT, wire)
    core.tick(IOPUB_PROBE_LIMIT - 0.01, wire)
    assert core.joining
    core.tick(IOPUB_PROBE_LIMIT, wire)
    assert not core.joining
    core.flush(wire)
    assert wire.messages()[-1]["msg_id"] == msg["msg_id"]


def test_a_replaced_iopub_connection_is_joined_again_before_the_next_request() -> None:
    core, wire, kernel = make_core(), Wire(), FakeKernel()
    welcomed(core, kernel)
    core.connections_dropped(["iopub"], ["iopub"], 1.0)  # a restarted kernel's, say
    sent = request(core, requests.execute("print(1)"), 1.0)
    core.flush(wire)
    assert wire.messages() == []  # its output would go to a subscription not in effect yet
    welcomed(core, kernel, 1.01)
    core.flush(wire)
    assert [msg["msg_id"] for msg in wire.messages()] == [sent["msg_id"]]


def test_a_second_join_never_drops_what_the_first_holds() -> None:
    core, wire, kernel = make_core(), Wire(), FakeKernel()
    first = request(core, requests.kernel_info(), 0.0)  # held: the join began
    core.connections_dropped(["iopub"], ["iopub"], 0.1)
    second = request(core, requests.kernel_info(), 0.1)
    welcomed(core, kernel, 0.2)
    core.flush(wire)
    assert [msg["msg_id"] for msg in wire.messages()] == [first["msg_id"], second["msg_id"]]


def test_after_expect_restart_only_the_new_process_joins_and_the_drop_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core, wire, old = make_core(), Wire(), FakeKernel()
    welcomed(core, old)
    core.expect_restart()  # before the old process stops
    core.receive("iopub", [old.status("idle")], 1.0)  # the old process's, read late
    sent = request(core, requests.execute("print(1)"), 1.0)
    core.flush(wire)
    assert wire.messages() == []  # the new process is not known to be subscribed to
    welcomed(core, FakeKernel(), 1.01)  # a session of its own
    core.flush(wire)
    assert [msg["msg_id"] for msg in wire.messages()] == [sent["msg_id"]]
    with caplog.at_level(logging.DEBUG, logger="kernelwire"):
        core.connections_dropped(["iopub"], ["iopub"], 1.1)
        core.connections_dropped(["iopub"], ["iopub"], 1.2)  # not expected: a loss
    levels = [r.levelno for r in caplog.records if "IOPub connection" in r.getMessage()]
    assert levels == [logging.DEBUG, logging.WARNING]


def test_stdin_is_never_held_and_no_iopub_means_no_join() -> None:
    core, wire = make_core(), Wire()
    core.send("stdin", core.session.request_message(requests.input_reply("x")), 0.0)
    core.flush(wire)
    assert len(wire.sent) == 1
    without_iopub = make_core(("shell", "hb"))
    request(without_iopub, requests.kernel_info(), 0.0)
    assert not without_iopub.joining


# -- sending ----------------------------------------------------------------------------
def test_a_refused_send_stays_queued_in_order_and_is_retried() -> None:
    core, wire = make_core(iopub_join_wait=0), Wire()
    first = request(core, requests.execute("1"), 0.0)
    second = request(core, requests.execute("2"), 0.0)
    wire.refusing = True
    assert not core.flush(wire)
    assert len(core.outbox) == 2
    assert core.next_deadline(0.0) <= SEND_RETRY_INTERVAL
    wire.refusing = False
    assert core.flush(wire)
    assert [m["msg_id"] for m in wire.messages()] == [first["msg_id"], second["msg_id"]]
    assert not core.outbox


# -- heartbeat and liveness ------------------------------------------------------------
def ticks(core: ClientCore, wire: Wire, start: float, end: float, step: float = 0.25) -> float:
    """Tick every ``step`` seconds from ``start`` until the kernel is dead or ``end``;
    returns the time of the last tick (a driver looks at least every ping interval)."""
    now = start
    while core.router.death is None and now < end:
        now = round(now + step, 6)
        core.tick(now, wire)
    return now


def test_an_unanswered_heartbeat_marks_the_kernel_dead() -> None:
    core = make_core(heartbeat=Heartbeat(interval=0.5, time_to_dead=3.0))
    wire = Wire()
    core.tick(0.0, wire)
    ((channel, ping),) = wire.sent
    assert channel == "hb"
    core.receive("hb", [ping], 0.1)  # the echo
    assert core.heartbeat.outstanding is None
    core.tick(0.7, wire)  # the next ping, never answered
    died_at = ticks(core, wire, 0.7, 10.0)
    assert 3.7 <= died_at <= 4.0  # time_to_dead after the ping, confirmed at a second look
    assert isinstance(core.router.death, KernelDied)
    assert "stopped answering its heartbeat" in str(core.router.death)
    with pytest.raises(KernelDied):
        core.router.check_alive()


def test_a_kernel_that_never_answered_is_starting_not_dead() -> None:
    core, wire = make_core(heartbeat=Heartbeat(time_to_dead=3.0, first_answer_grace=30.0)), Wire()
    core.tick(0.0, wire)
    assert ticks(core, wire, 0.0, 20.0) >= 20.0  # no pong yet: not judged by time_to_dead
    assert core.router.death is None
    assert ticks(core, wire, 20.0, 40.0) < 40.0  # ... but after first_answer_grace
    assert isinstance(core.router.death, KernelDied)


def test_a_verified_reply_proves_the_kernel_past_its_start() -> None:
    core, wire, kernel = make_core(heartbeat=Heartbeat(time_to_dead=3.0)), Wire(), FakeKernel()
    welcomed(core, kernel)
    assert not core.heartbeat.answered  # IOPub is a broadcast: it proves nothing
    req = request(core, requests.kernel_info(), 0.0)
    core.receive("shell", [kernel.reply(req)], 0.1)
    assert core.heartbeat.answered
    core.tick(0.2, wire)  # a ping, never answered: judged by time_to_dead
    assert ticks(core, wire, 0.2, 10.0) < 4.0
    core.heartbeat.reset()  # a restart makes the kernel starting again
    assert not core.heartbeat.answered


def test_a_process_check_that_finds_the_process_outweighs_missed_pings() -> None:
    core, wire = make_core(heartbeat=Heartbeat(time_to_dead=3.0)), Wire()
    core.liveness_checks.append(lambda: None)  # the process runs (SIGSTOPped, say)
    core.tick(0.0, wire)
    core.receive("hb", [wire.sent[-1][1]], 0.1)  # one pong: answered
    assert ticks(core, wire, 0.1, 20.0) >= 20.0
    assert core.router.death is None  # it never answered again, and is not reported dead


def test_a_dropped_heartbeat_connection_gives_a_short_grace() -> None:
    core, wire = make_core(), Wire()
    core.tick(0.0, wire)
    core.connections_dropped(["hb"], [], 1.0)
    assert core.next_deadline(1.0) == 0.0  # ping the suspect now
    wire.refusing = True  # nobody listens on the port: ZeroMQ takes no ping
    core.tick(1.0, wire)
    core.tick(1.3, wire)
    assert core.router.death is None
    died_at = ticks(core, wire, 1.3, 3.0, step=0.1)
    assert 1.5 <= died_at <= 1.7  # the grace, confirmed at a second look
    assert "closed its heartbeat connection" in str(core.router.death)


def test_a_ping_taken_after_a_drop_proves_a_kernel_listens_again() -> None:
    core, wire = make_core(heartbeat=Heartbeat(time_to_dead=3.0)), Wire()
    core.tick(0.0, wire)
    core.receive("hb", [wire.sent[-1][1]], 0.1)
    core.connections_dropped(["hb"], [], 1.0)
    core.tick(1.0, wire)  # taken: a restarted kernel listens
    assert ticks(core, wire, 1.0, 3.5) >= 3.5  # judged by time_to_dead, not the grace
    assert core.router.death is None


def test_a_dropped_shell_connection_fails_its_waiting_requests_with_reply_lost() -> None:
    core, kernel = make_core(), FakeKernel()
    welcomed(core, kernel)
    on_shell = request(core, requests.execute("1"), 0.0)
    on_control = request(core, requests.interrupt(), 0.0)
    answered = request(core, requests.kernel_info(), 0.0)
    core.receive("shell", [kernel.reply(answered)], 0.1)
    core.connections_dropped(["shell"], ["shell", "stdin"], 0.2)
    failed = core.router.pending[on_shell["msg_id"]]
    with pytest.raises(ReplyLost, match=r"dropped the shell connection.*shell and stdin"):
        failed.raise_if_failed()
    core.router.pending[on_control["msg_id"]].raise_if_failed()  # not on a dropped channel
    core.router.pending[answered["msg_id"]].raise_if_failed()  # answered already


def test_a_restart_fails_the_waiting_requests_and_leaves_the_answered_ones() -> None:
    core, kernel = make_core(), FakeKernel()
    welcomed(core, kernel)
    waiting = request(core, requests.execute("1"), 0.0)
    answered = request(core, requests.kernel_info(), 0.0)
    core.receive("shell", [kernel.reply(answered)], 0.1)
    core.receive("iopub", [kernel.status("idle", answered)], 0.1)
    core.fail_pending(KernelRestarted("restarted"))
    with pytest.raises(KernelRestarted):
        core.router.pending[waiting["msg_id"]].raise_if_failed()
    core.router.pending[answered["msg_id"]].raise_if_failed()


def test_a_refused_ping_is_retried_and_its_verdict_clock_runs() -> None:
    core, wire = make_core(), Wire()
    wire.refusing = True
    core.tick(0.0, wire)
    assert core.heartbeat.outstanding is None  # nothing went out: try again shortly
    wire.refusing = False
    core.tick(0.05, wire)
    assert [channel for channel, _ in wire.sent] == ["hb"]


def test_liveness_checks_run_once_per_interval_and_can_mark_death() -> None:
    core, wire = make_core(("shell",)), Wire()
    calls: list[float] = []
    verdict: list[KernelDied] = []

    def check() -> KernelDied | None:
        calls.append(0)
        return verdict[0] if verdict else None

    core.liveness_checks.append(check)
    for step in range(10):
        core.tick(step * LIVENESS_INTERVAL / 5, wire)
    assert len(calls) == 2
    verdict.append(KernelDied("the process exited"))
    core.tick(10.0, wire)
    assert core.router.death is verdict[0]


def test_restart_pauses_then_resets_the_verdicts() -> None:
    core, wire = make_core(), Wire()
    core.tick(0.0, wire)
    was_paused = core.pause_liveness()
    core.tick(10.0, wire)  # the restart drops the connection: not a death
    assert core.router.death is None
    core.mark_dead(KernelDied("seen dead meanwhile"))
    core.reset_after_restart()
    core.resume_liveness(was_paused)
    assert core.router.death is None
    assert core.heartbeat.outstanding is None
    core.tick(11.0, wire)
    assert core.heartbeat.outstanding is not None  # pinging again


# -- server statuses and replays (the WebSocket's codec) --------------------------------
def ws_frame(
    session: Session, msg_type: str, content: Mapping[str, Any], parent: Message | None
) -> bytes:
    msg = session.message(msg_type, content, parent=None if parent is None else parent["header"])
    return encode_v1("iopub" if msg_type == "status" else "shell", msg)


def test_a_reconnect_replay_is_delivered_once() -> None:
    session = Session()
    core = ClientCore(session, WebSocketCodec(V1_SUBPROTOCOL), ("shell", "iopub"))
    kernel = Session()
    req = request(core, requests.kernel_info(), 0.0)
    reply = ws_frame(kernel, "kernel_info_reply", {"status": "ok"}, req)
    idle = ws_frame(kernel, "status", {"execution_state": "idle"}, req)
    core.receive("shell", [reply, idle], 0.0)
    core.receive("shell", [reply, idle], 0.1)  # replayed by the server after a reconnect
    state = core.router.pending[req["msg_id"]]
    assert [msg["msg_type"] for _, msg in state.events] == ["kernel_info_reply", "status"]
    assert core.router.rejected == 0


def test_a_server_reporting_its_kernel_dead_marks_it_dead() -> None:
    session = Session()
    core = ClientCore(session, WebSocketCodec(V1_SUBPROTOCOL), ("shell", "iopub"))
    req = request(core, requests.kernel_info(), 0.0)
    core.receive("shell", [ws_frame(Session(), "status", {"execution_state": "dead"}, req)], 0.0)
    assert isinstance(core.router.death, KernelDied)
    assert core.events == ["dead"]


def test_a_server_restarting_its_dead_kernel_fails_what_waited() -> None:
    session = Session()
    core = ClientCore(session, WebSocketCodec(V1_SUBPROTOCOL), ("shell", "iopub"))
    waiting = request(core, requests.execute("1"), 0.0)
    answered = request(core, requests.kernel_info(), 0.0)
    core.receive("shell", [ws_frame(Session(), "kernel_info_reply", {}, answered)], 0.0)
    core.receive(
        "iopub", [ws_frame(Session(), "status", {"execution_state": "idle"}, answered)], 0.0
    )
    status = ws_frame(Session(), "status", {"execution_state": "restarting"}, None)
    core.receive("iopub", [status], 0.1)
    assert isinstance(core.router.pending[waiting["msg_id"]].error, KernelRestarted)
    assert core.router.pending[answered["msg_id"]].error is None  # done before: kept
    assert core.router.death is None  # the new kernel is alive
    assert core.events == ["restarting"]


# -- engines over a fake transport --------------------------------------------------------
class PipeTransport:
    """A transport whose wire is a queue per channel; their waitables, pipes written on
    each arrival."""

    needs_iopub_join = False
    lost: str | None = None
    drained = True  # a drain takes the whole queue

    def __init__(self, channels: Collection[ChannelName], session: Session) -> None:
        self.channels = frozenset(channels)
        self.codec = ZmqCodec(session)
        self.kernel = FakeKernel()
        self.inbox: dict[ChannelName, deque[Any]] = {ch: deque() for ch in self.channels}
        self.sent: list[Message] = []
        self.refusals = 0
        self.pipes = {ch: os.pipe() for ch in self.channels}
        for read_end, _ in self.pipes.values():
            os.set_blocking(read_end, False)
        self.closed = False

    def where(self, channel: ChannelName) -> str:
        return f"fake://{channel}"

    def send(self, channel: ChannelName, unit: Any) -> bool:
        if self.closed:
            raise ClientClosed("closed")
        if self.refusals:
            self.refusals -= 1
            return False
        msg = Session(KEY, check_replay=False).decode(unit)[1]
        self.sent.append(msg)
        if msg["msg_type"].endswith("_request"):  # the fake kernel answers at once
            self.arrive("shell", self.kernel.reply(msg))
            self.arrive("iopub", self.kernel.status("idle", msg))
        return True

    def arrive(self, channel: ChannelName, unit: Any) -> None:
        self.inbox[channel].append(unit)
        os.write(self.pipes[channel][1], b"!")

    def drain(self, channel: ChannelName) -> list[Any]:
        with contextlib.suppress(BlockingIOError):
            os.read(self.pipes[channel][0], 4096)
        out = list(self.inbox[channel])
        self.inbox[channel].clear()
        return out

    def waitable(self, channel: ChannelName) -> int:
        return self.pipes[channel][0]

    def event_waitables(self) -> Collection[Any]:
        return ()

    def dropped(self, now: float) -> list[ChannelName]:
        return []

    def next_check(self) -> float | None:
        return None

    def stalled(self) -> str | None:
        return None

    def reconnect(self, channel: ChannelName) -> list[ChannelName]:
        return [channel]

    def check_open(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        for ends in self.pipes.values():
            for fd in ends:
                os.close(fd)


@pytest.fixture
def transports() -> Iterator[list[PipeTransport]]:
    made: list[PipeTransport] = []
    yield made
    assert all(t.closed for t in made)


def factory(made: list[PipeTransport], refusals: int = 0) -> Any:
    def make(channels: list[ChannelName], session: Session) -> Transport:
        transport = PipeTransport(("shell", "iopub"), Session(KEY, session_id=session.session_id))
        transport.refusals = refusals
        made.append(transport)
        return transport

    return make


INFO = {"key": KEY.decode(), "shell_port": 1, "iopub_port": 2, "stdin_port": 3}
INFO |= {"control_port": 4, "hb_port": 5}


def test_blocking_engine_retries_a_refused_send(transports: list[PipeTransport]) -> None:
    client = BlockingKernelClient(connection_info=INFO, transport_factory=factory(transports, 3))
    with client:
        reply = client.kernel_info(reply=True, timeout=10)
        assert reply["msg_type"] == "kernel_info_reply"
    (transport,) = transports
    assert transport.refusals == 0
    assert [m["msg_type"] for m in transport.sent] == ["kernel_info_request"]


def test_async_engine_retries_a_refused_send(transports: list[PipeTransport]) -> None:
    async def main() -> Message:
        client = AsyncKernelClient(connection_info=INFO, transport_factory=factory(transports, 3))
        async with client:
            reply: Message = await client.kernel_info(reply=True, timeout=10)
            return reply

    assert asyncio.run(main())["msg_type"] == "kernel_info_reply"
    (transport,) = transports
    assert transport.refusals == 0
    assert [m["msg_type"] for m in transport.sent] == ["kernel_info_request"]
