"""Starting and stopping kernel processes: ports, process groups, logs.

Every kernel runs in its own process group (session), so an interrupt or a kill
reaches what the kernel itself started, and nothing outlives it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Literal

from ..client.blocking import BlockingKernelClient
from ..errors import KernelDied, KernelTimeout
from ..protocol.connection import PORT_FIELDS, ConnectionInfo, free_tcp_ports

PORT_RESERVATION = 60.0
"""Seconds a port handed out by this process is kept from being handed out again."""

_reserved: dict[int, float] = {}
_reserved_lock = threading.Lock()


def allocate_ports(ip: str = "127.0.0.1") -> dict[str, int]:
    """Five free ports for a kernel, never ones this process handed out in the last minute.

    Concurrent starts in one process therefore never collide; a clash with another
    process (the port taken between our probe and the kernel's bind) is caught by the
    caller, which retries with new ports.
    """
    with _reserved_lock:
        now = time.monotonic()
        for port, when in list(_reserved.items()):
            if now - when > PORT_RESERVATION:
                del _reserved[port]
        chosen: list[int] = []
        while len(chosen) < len(PORT_FIELDS):
            for port in free_tcp_ports(ip, len(PORT_FIELDS)):
                if port not in _reserved and port not in chosen:
                    chosen.append(port)
        chosen = chosen[: len(PORT_FIELDS)]
        for port in chosen:
            _reserved[port] = now
    return dict(zip(PORT_FIELDS, chosen, strict=True))


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ours, the spec's ``env``, and our pid as its parent.

    ipykernel exits when the process named by ``JPY_PARENT_PID`` goes away, so a
    kernel never outlives a client process that was killed.
    """
    env = dict(os.environ)
    env.update(extra or {})
    env["JPY_PARENT_PID"] = str(os.getpid())
    env.pop("JPY_SESSION_NAME", None)
    return env


class KernelLog:
    """A temporary file that receives the kernel's stdout and stderr."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="kernelwire-kernel-", suffix=".log")
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines written."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """Close and delete the log."""
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def spawn(
    argv: Sequence[str],
    log: KernelLog,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group with its output going to ``log``."""
    return subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=log.file,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> bool:
    """Send ``sig`` to the kernel's process group; False if it is already gone."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def terminate(proc: subprocess.Popen[bytes], grace: float = 3.0) -> int | None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; reap it.

    Anything left in the group (processes the kernel started) is killed too.
    Returns the exit code.
    """
    if proc.poll() is None:
        with exit_watch(proc) as wait:
            for sig, seconds in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                signal_group(proc, sig)
                if wait(seconds):
                    break
    signal_group(proc, signal.SIGKILL)
    return proc.poll()


@contextlib.contextmanager
def exit_watch(proc: subprocess.Popen[bytes]) -> Iterator[Callable[[float], bool]]:
    """A ``wait(timeout)`` for the process's exit (True if it exited), for repeated use.

    On Linux one pidfd says the moment the process exits; ``Popen.wait`` with a timeout
    polls with sleeps of up to 50 ms.
    """
    pidfd: int | None = None
    if proc.poll() is None and hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):  # too old a kernel, or no such process: poll
            pidfd = os.pidfd_open(proc.pid)

    def wait(timeout: float) -> bool:
        if pidfd is not None and proc.returncode is None:
            readable, _, _ = select.select([pidfd], [], [], max(timeout, 0.0))
            if not readable:
                return False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        yield wait
    finally:
        if pidfd is not None:
            os.close(pidfd)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to exit; True if it did."""
    with exit_watch(proc) as wait:
        return wait(timeout)


CLOSING_GRACE = 1.0
"""Seconds a kernel that has closed its connections after ``shutdown_request`` gets to exit.

ipykernel closes its sockets in an atexit handler registered at start-up, so it runs
after the user's own handlers; what follows is thread joins and the interpreter's exit.
ipykernel 7 sometimes hangs in one of those joins (its control thread flushes output to
the IOPub thread just stopped) until a 10 s flush timeout.
"""


def wait_exit_after_reply(
    proc: subprocess.Popen[bytes], timeout: float, closed: Callable[[], bool]
) -> Literal["exited", "closed", "timeout"]:
    """Wait for a kernel that answered ``shutdown_request`` to exit.

    Waits up to ``timeout`` seconds, but only :data:`CLOSING_GRACE` seconds once
    ``closed()`` says the kernel has closed its connections. Returns ``"exited"``, or
    why it stopped waiting: ``"closed"`` (the grace ran out) or ``"timeout"``.
    """
    deadline = time.monotonic() + timeout
    closed_at: float | None = None
    with exit_watch(proc) as wait:
        while True:
            now = time.monotonic()
            limit = deadline if closed_at is None else min(deadline, closed_at + CLOSING_GRACE)
            if now >= limit:
                return "timeout" if closed_at is None or limit == deadline else "closed"
            if wait(min(0.05, limit - now)):
                return "exited"
            if closed_at is None and closed():
                closed_at = time.monotonic()


def wait_until_answering(
    info: ConnectionInfo,
    proc: subprocess.Popen[bytes],
    log: KernelLog,
    timeout: float,
    what: str,
) -> None:
    """Wait until the kernel answers ``kernel_info`` *and* its IOPub idle is in.

    Taking the probe's own statuses means none of them reaches the caller's client
    later. Raises :class:`KernelDied` (with the kernel's output) if the process exits
    first, :class:`KernelTimeout` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    client = BlockingKernelClient(connection_info=info)
    client.start_channels(stdin=False, hb=False, control=False)
    try:
        while True:
            code = proc.poll()
            if code is not None:
                raise KernelDied(
                    f"{what} exited during start-up", exit_code=code, stderr=log.tail()
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelTimeout(f"{what} did not answer within {timeout:g} s\n{log.tail()}")
            try:
                client.wait_for_ready(min(0.5, left))
                return
            except KernelTimeout:
                continue
    finally:
        client.stop_channels()
