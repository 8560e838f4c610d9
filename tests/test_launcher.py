"""One launcher for every kernel start: a port lost to another process means a new start.

Between the moment the launcher picks a kernel's ports and the moment the kernel binds
them, any process may take one (another test worker's kernel, an outgoing connection's
ephemeral port). ipykernel then exits (shell, stdin, control), hangs (IOPub) or runs
without a heartbeat (its heartbeat thread dies): all three must end in a kernel that
answers on ports of its own, whether started by ``Kernel.start`` or ``run_kernel_in_process``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kernelwire import (
    BlockingKernelClient,
    KernelTimeout,
    PortInUse,
    ReplyLost,
    run_kernel_in_process,
    start_kernel,
)
from kernelwire import connection_file as connection_file_module
from kernelwire.lifecycle import kernel as kernel_module
from kernelwire.lifecycle import launcher
from kernelwire.protocol import connection
from kernelwire.protocol.connection import PORT_FIELDS, ConnectionInfo
from kernelwire.protocol.message import Message


class PortThief:
    """Binds and listens on one chosen port of a start, as a process that won the race."""

    def __init__(self, field: str, every_start: bool) -> None:
        self.field = field
        self.every_start = every_start
        self.sockets: list[socket.socket] = []

    @property
    def taken(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self.sockets]

    def take(self, ports: dict[str, int]) -> None:
        if self.sockets and not self.every_start:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sockets.append(sock)
        # As ZeroMQ binds (and as the launcher probes): a port whose old connections linger
        # in TIME_WAIT is free to take.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", ports[self.field]))
        sock.listen()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def steal_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., PortThief]]:
    """``steal_port(field)``: the port chosen for ``field`` is taken right after the choice.

    The seams are where ports are chosen: ``allocate_ports`` (and, so that the test shows
    the fault on earlier code too, ``free_tcp_ports`` under ``new_connection_info``).
    """
    thieves: list[PortThief] = []
    real_allocate = launcher.allocate_ports
    real_free = connection.free_tcp_ports

    def steal(field: str, every_start: bool = False) -> PortThief:
        thief = PortThief(field, every_start)
        thieves.append(thief)

        def allocate(ip: str = "127.0.0.1") -> dict[str, int]:
            ports = real_allocate(ip)
            thief.take(ports)
            return ports

        def free(ip: str = "127.0.0.1", count: int = 5) -> list[int]:
            ports = real_free(ip, count)
            if count == len(PORT_FIELDS):
                thief.take(dict(zip(PORT_FIELDS, ports, strict=True)))
            return ports

        monkeypatch.setattr(launcher, "allocate_ports", allocate)
        monkeypatch.setattr(kernel_module, "allocate_ports", allocate, raising=False)
        monkeypatch.setattr(connection, "free_tcp_ports", free)
        return thief

    try:
        yield steal
    finally:
        for thief in thieves:
            thief.close()


def assert_on_ports_of_its_own(
    info: ConnectionInfo, connection_file: str, thief: PortThief
) -> None:
    assert thief.taken, "the test took no port: the launcher did not choose ports"
    ports = {getattr(info, field) for field in PORT_FIELDS}
    assert not ports & set(thief.taken)
    with BlockingKernelClient(connection_file) as client:
        reply = client.kernel_info(reply=True, timeout=60)
        assert reply["content"]["status"] == "ok"
        assert client.is_alive(), "its heartbeat must answer: the heartbeat port is its own"


@pytest.mark.parametrize("field", ["shell_port", "iopub_port", "hb_port"])
def test_run_kernel_in_process_starts_again_on_new_ports(
    field: str,
    steal_port: Callable[..., PortThief],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """shell: ipykernel exits; iopub: it hangs; hb: it answers without a heartbeat."""
    thief = steal_port(field)
    logs = caplog.at_level(logging.INFO, logger="kernelwire.launcher")
    with logs, run_kernel_in_process(tmp_path / "kernel.json") as kernel:
        assert_on_ports_of_its_own(kernel.connection_info, kernel.connection_file, thief)
    assert f"field {field!r}: port {thief.taken[0]} is already in use" in caplog.text
    assert "starting it again on new ports" in caplog.text
    assert not (tmp_path / "kernel.json").exists()


@pytest.mark.parametrize("field", ["shell_port", "iopub_port", "hb_port"])
def test_kernel_start_starts_again_on_new_ports(
    field: str, steal_port: Callable[..., PortThief], caplog: pytest.LogCaptureFixture
) -> None:
    thief = steal_port(field)
    logs = caplog.at_level(logging.INFO, logger="kernelwire.launcher")
    with logs, start_kernel("python3") as kernel:
        assert kernel.connection_info is not None and kernel.connection_file is not None
        assert_on_ports_of_its_own(kernel.connection_info, kernel.connection_file, thief)
        result = kernel.run("print(6 * 7)", timeout=60)
        assert result.stdout == "42\n"
    assert f"field {field!r}: port {thief.taken[0]} is already in use" in caplog.text


def test_a_clash_whose_holder_is_gone_by_the_probe_starts_again(
    steal_port: Callable[..., PortThief],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A port's holder can be gone when the launcher looks after the kernel exited (an
    outgoing connection's ephemeral port; seen in nbclient's suite run with two workers):
    the kernel's own "Address already in use" is evidence of the clash."""
    thief = steal_port("shell_port")
    monkeypatch.setattr(launcher, "ports_in_use", lambda path, info: None)
    logs = caplog.at_level(logging.INFO, logger="kernelwire.launcher")
    with logs, start_kernel("python3") as kernel:
        assert kernel.connection_info is not None and kernel.connection_file is not None
        assert_on_ports_of_its_own(kernel.connection_info, kernel.connection_file, thief)
    assert f"port {thief.taken[0]} is already in use (the kernel could not bind it)" in caplog.text


def test_a_kernel_hung_on_a_lost_iopub_port_whose_holder_is_gone_starts_again(
    steal_port: Callable[..., PortThief],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ipykernel that cannot bind its IOPub port prints the error and hangs. Seen in CI:
    the holder (a connection that had the port as its source port) was gone by the time
    the launcher looked, and the start timed out after 60 s. The kernel's own words must
    start it again, long before the timeout."""
    thief = steal_port("iopub_port")
    monkeypatch.setattr(launcher, "port_taken_from", lambda kernel: None)
    monkeypatch.setattr(launcher, "ports_in_use", lambda path, info: None)
    logs = caplog.at_level(logging.INFO, logger="kernelwire.launcher")
    with logs, start_kernel("python3", startup_timeout=45) as kernel:
        assert kernel.connection_info is not None and kernel.connection_file is not None
        assert_on_ports_of_its_own(kernel.connection_info, kernel.connection_file, thief)
    assert f"port {thief.taken[0]} is already in use (the kernel could not bind it)" in caplog.text
    assert "did not answer" not in caplog.text


def test_kernel_ports_are_outside_the_range_outgoing_connections_take_theirs_from() -> None:
    """A client connecting to a port in the OS's ephemeral range before the kernel binds
    it can get that same port as its source port (TCP connects to itself) and so take it
    from the kernel; seen in CI with the launcher's own IOPub socket. Linux says the range."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not path.exists():
        pytest.skip("the OS does not say which ports it gives outgoing connections")
    low, high = (int(word) for word in path.read_text().split())
    if low - 20000 + 65535 - high < 1000:
        pytest.skip(f"the ephemeral range {low}-{high} leaves few ports outside it")
    chosen = [port for _ in range(20) for port in launcher.allocate_ports().values()]
    assert len(chosen) == 100
    inside = [port for port in chosen if low <= port <= high]
    assert not inside, f"{len(inside)} of 100 ports in the ephemeral range {low}-{high}"
    for _ in range(20):
        ports = connection_file_module.free_tcp_ports(count=5)
        assert len(set(ports)) == 5


def test_a_port_lost_on_every_try_is_reported_and_nothing_is_left(
    steal_port: Callable[..., PortThief], tmp_path: Path, no_leaks: None
) -> None:
    thief = steal_port("control_port", every_start=True)
    path = tmp_path / "kernel.json"
    with pytest.raises(PortInUse) as excinfo:
        run_kernel_in_process(path)
    assert len(thief.taken) == launcher.PORT_RETRIES
    assert excinfo.value.field == "control_port"
    assert excinfo.value.port == thief.taken[-1]
    assert not path.exists()


def test_ports_held_by_someone_else_are_found_while_the_kernel_runs(tmp_path: Path) -> None:
    """The OS says who holds a port: the kernel's own ports are not taken from it."""
    with run_kernel_in_process(tmp_path / "kernel.json") as kernel:
        assert launcher.port_taken_from(kernel) is None
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            stranger = kernel.connection_info.with_ports(stdin_port=other.getsockname()[1])
            moved = launcher.KernelProcess(kernel.proc, "moved.json", stranger, kernel.log)
            try:
                lost = launcher.port_taken_from(moved)
            finally:
                moved._finalizer.detach()
        assert lost is not None and lost.field == "stdin_port"
        assert "taken by another process" in str(lost)


def test_a_python_kernel_hung_in_its_start_shows_its_stacks(tmp_path: Path) -> None:
    """With PYTHONFAULTHANDLER in its environment (the tests set it), a kernel spec's
    Python kernel that does not answer in time is asked for its stacks with SIGABRT."""
    import sys

    import kernelwire

    spec = kernelwire.KernelSpec(
        name="hangs",
        argv=(
            sys.executable,
            "-c",
            "import threading; threading.Event().wait()",
            "{connection_file}",
        ),
        display_name="Hangs",
        language="python",
        resource_dir=str(tmp_path),
    )
    kernel = kernelwire.Kernel(spec, env={"PYTHONFAULTHANDLER": "1"}, startup_timeout=8)
    try:
        with pytest.raises(kernelwire.KernelTimeout) as excinfo:
            kernel.start()
    finally:
        kernel.shutdown(now=True)
    message = str(excinfo.value)
    assert "did not answer within 8 s" in message
    assert "(most recent call first):" in message and "in wait" in message, message


def test_a_kernel_whose_iopub_stays_silent_is_connected_to_afresh(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A kernel that answers on shell while its first IOPub connection brings nothing
    (seen once in CI: an idle kernel, not one status in 170 s) is connected to again, and
    the start goes on; the timeout says what was answered and what was not."""
    import subprocess
    import sys

    from fake_kernel import FakeKernel

    def statuses_for_the_second_client(
        kernel: FakeKernel, channel: str, identity: bytes, request: Message
    ) -> None:
        talking = len([t for t in kernel.subscriptions if t]) >= 2
        if talking:
            kernel.status(request, "busy")
        kernel.reply(channel, identity, request)
        if talking:
            kernel.status(request, "idle")

    monkeypatch.setattr(launcher, "IOPUB_SILENCE", 1.0, raising=False)
    with FakeKernel(statuses_for_the_second_client) as fake:
        path = str(tmp_path / "kernel.json")
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        process = launcher.KernelProcess(proc, path, fake.info, launcher.KernelLog())
        try:
            launcher._wait_until_answering(process, 20, "fake kernel")
            assert len([t for t in fake.subscriptions if t]) == 2
        finally:
            process.stop()

    def never_a_status(kernel: FakeKernel, channel: str, identity: bytes, request: Message) -> None:
        kernel.reply(channel, identity, request)

    with FakeKernel(never_a_status) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        process = launcher.KernelProcess(proc, path, fake.info, launcher.KernelLog())
        try:
            with pytest.raises(KernelTimeout) as excinfo:
                launcher._wait_until_answering(process, 3.5, "fake kernel")
        finally:
            process.stop()
    message = str(excinfo.value)
    assert "fake kernel did not answer within 3.5 s" in message
    assert "it answered kernel_info" in message and "connection(s) to its IOPub port" in message
    assert len([t for t in fake.subscriptions if t]) >= 3


def test_a_program_holding_over_1024_descriptors_starts_and_stops_kernels() -> None:
    """A program with a hundred kernels holds more than 1024 descriptors; waiting for a
    kernel's exit through ``select`` refused such a descriptor (``ValueError``), which
    broke the shutdown of the 100 kernels of the fork benchmark."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted + 200:
        pytest.fail(f"the descriptor limit {hard} is below what the test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted + 200), hard))
    held: list[int] = []
    try:
        with open(os.devnull, "rb") as devnull:
            while not held or held[-1] < wanted:
                held.append(os.dup(devnull.fileno()))
        with start_kernel("python3") as kernel:
            assert kernel.run("6 * 7").text == "42"
            kernel.shutdown()
            assert not kernel.is_alive()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


LOG_OWNER = """
import json, os, sys, time
import kernelwire
kernel = kernelwire.start_kernel("python3", fork=sys.argv[1] == "fork")
kernel.run("import os; os.write(2, b'written to the log\\\\n')", timeout=60)
deadline = time.monotonic() + 30
while "written to the log" not in kernel.stderr_tail() and time.monotonic() < deadline:
    time.sleep(0.05)
path = kernel._process.log.path
print(json.dumps([kernel.pid, path, os.path.exists(path), kernel.stderr_tail()]), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["spawn", "fork"])
def test_a_program_killed_with_sigkill_leaves_no_kernel_log(tmp_path: Path, how: str) -> None:
    """The kernel's output file has no name once the kernel holds it: nothing is left in
    the temporary directory by a program that cannot clean up, and its output is still
    read (a start-up error, a dead kernel's last words)."""
    script = tmp_path / "owner.py"
    script.write_text(LOG_OWNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    owner = subprocess.Popen(
        [sys.executable, str(script), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    kernel_pid = None
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line, owner.communicate(timeout=60)
        kernel_pid, path, named, tail = json.loads(line)
        assert "written to the log" in tail
        assert not named, f"{path} still has its name while the kernel runs"
        owner.kill()
        owner.communicate(timeout=60)
        assert not os.path.exists(path)
    finally:
        if kernel_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(kernel_pid, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.communicate()


def test_a_start_survives_a_probe_s_reply_trailing_its_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under heavy load (64 kernels starting on two cores, seen in a full run) a
    kernel_info reply can trail its IOPub idle by more than the grace, and the probe
    ends with ReplyLost. The kernel runs: the start (its first probe, then
    wait_for_ready's) must ask again, not fail."""
    from kernelwire.client import _pending

    real = _pending.PendingBase._reply_steps
    lost: list[str] = []

    def trailing(self: Any, timeout: float | None) -> Any:
        if self._state.msg_type == "kernel_info_request" and len(lost) < 2:
            lost.append(self.msg_id)
            # What the router raises once the idle came without the reply.
            raise ReplyLost(
                "a reply trailing its idle", msg_id=self.msg_id, msg_type="kernel_info_request"
            )
        return (yield from real(self, timeout))

    monkeypatch.setattr(_pending.PendingBase, "_reply_steps", trailing)
    with start_kernel("python3") as kernel:
        assert kernel.run("6 * 7", timeout=60).text == "42"
    assert len(lost) == 2
