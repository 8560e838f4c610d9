"""Starting and stopping kernel processes: ports, process groups, logs.

:func:`launch` is the one way a kernel process is started (by :class:`~kernelwire.Kernel`
and by :func:`~kernelwire.run_kernel_in_process`): ports reserved per process, a process
group of its own, its output in a log, a wait until it answers, and, if another process
took one of its ports between our choice and the kernel's bind, a new start on new ports.

Every kernel runs in its own process group (session), so an interrupt or a kill
reaches what the kernel itself started, and nothing outlives it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

from .._fdwait import readable
from ..client.blocking import BlockingKernelClient
from ..connection_file import free_tcp_ports, new_connection_info
from ..errors import (
    KernelDied,
    KernelLaunchError,
    KernelStartTimeout,
    KernelTimeout,
    PortInUse,
    ReplyLost,
)
from ..protocol import requests
from ..protocol.connection import PORT_FIELDS, ConnectionInfo, Transport

log = logging.getLogger("kernelwire.launcher")

STARTUP_TIMEOUT = 60.0
"""Seconds a kernel gets, by default, to answer after its process starts."""
PORT_RETRIES = 3
"""How many times in all a kernel is started when it loses a port to another process."""
STOP_GRACE = 3.0
"""Seconds a kernel gets to exit after SIGTERM when it is stopped, before SIGKILL."""
PORT_RESERVATION = 60.0
"""Seconds a port handed out by this process is kept from being handed out again."""
IOPUB_SILENCE = 15.0
"""Seconds a starting kernel that answers on shell may leave its IOPub silent before the
launcher connects to it afresh."""
CLASH_CHECK_WAIT = 0.5
"""Seconds between checks for a lost port of a kernel that neither answers nor runs; the
wait doubles after each check that finds none. Reading the OS's socket table costs 10 ms
of CPU and more (it grows with the sockets open), so a kernel busy starting, or one that
answers its heartbeat, is not checked at all."""

_reserved: dict[int, float] = {}
_reserved_lock = threading.Lock()


def allocate_ports(ip: str = "127.0.0.1") -> dict[str, int]:
    """Five free ports for a kernel, never ones this process handed out in the last minute.

    Concurrent starts in one process therefore never collide; a clash with another
    process (the port taken between our probe and the kernel's bind) is caught by
    :func:`launch`, which starts the kernel again on new ports.
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


def reserved_connection_info(
    *, ip: str = "127.0.0.1", transport: Transport = "tcp", **options: Any
) -> ConnectionInfo:
    """Fresh connection info for one start: ports from :func:`allocate_ports` (tcp), a new key.

    ``options`` go to :func:`~kernelwire.connection_file.new_connection_info`.
    """
    ports = allocate_ports(ip) if transport == "tcp" else None
    return new_connection_info(ip=ip, transport=transport, ports=ports, **options)


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


class ProcessHandle(Protocol):
    """What the launcher needs of a kernel's process: a :class:`subprocess.Popen`, or a
    kernel forked from a template (:class:`~kernelwire.lifecycle.forkserver.ForkedProcess`).

    ``pid`` also names the kernel's process group; ``poll`` and ``wait`` follow
    :class:`subprocess.Popen` (``wait`` raises :class:`subprocess.TimeoutExpired`).
    """

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


Starter = Callable[
    [Sequence[str], "KernelLog", Mapping[str, str] | None, str | None], ProcessHandle
]
"""Starts a kernel's command line (argv, its log, env, cwd) and returns its process; the
default is :func:`spawn`'s, a fork server gives its own."""

_RUN_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def file_command(python: str, script: str, *args: str) -> list[str]:
    """The command line that runs ``script`` as a file with ``args``, without putting the
    script's folder first on the path (as ``python FILE`` would: a child that must not
    import this package, which lives there)."""
    return [python, "-c", _RUN_FILE, script, *args]


class KernelLog:
    """A temporary file that receives the kernel's stdout and stderr.

    Its name is removed as soon as the kernel holds the file (:meth:`forget_name`, done
    by :func:`spawn` and by the fork server once the fork has it open): a program killed
    with SIGKILL then leaves no log behind; this process reads it through its own
    descriptor until :meth:`close`.
    """

    TAIL_BYTES = 256 * 1024
    """At most this much of the end of the log is read for :meth:`tail`."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="kernelwire-kernel-", suffix=".log")
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def forget_name(self) -> None:
        """Remove the file's name; what is written stays readable here."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines written."""
        try:
            fd = self.file.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - self.TAIL_BYTES)
            data = os.pread(fd, size - start, start)
        except (OSError, ValueError):  # ValueError: closed
            return ""
        text = data.decode("utf-8", errors="replace")
        return "".join(text.splitlines(keepends=True)[-lines:])

    def size(self) -> int:
        """How many bytes have been written (0 once the log is closed)."""
        try:
            return os.fstat(self.file.fileno()).st_size
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        """Close and delete the log."""
        self.file.close()
        self.forget_name()


def spawn(
    argv: Sequence[str],
    log: KernelLog,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: int | None = subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group with its output going to ``log`` (whose
    name is removed once the process holds it)."""
    try:
        return subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=log.file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    finally:
        log.forget_name()


def signal_group(proc: ProcessHandle, sig: int) -> bool:
    """Send ``sig`` to the kernel's process group; False if it is already gone."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def terminate(proc: ProcessHandle, grace: float = 3.0) -> int | None:
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
def exit_watch(proc: ProcessHandle) -> Iterator[Callable[[float], bool]]:
    """A ``wait(timeout)`` for the process's exit (True if it exited), for repeated use.

    On Linux one pidfd says the moment the process exits; ``Popen.wait`` with a timeout
    polls with sleeps of up to 50 ms.
    """
    pidfd: int | None = None
    if proc.poll() is None and hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):  # too old a kernel, or no such process: poll
            pidfd = os.pidfd_open(proc.pid)

    def wait(timeout: float) -> bool:
        if pidfd is not None and proc.returncode is None and not readable([pidfd], timeout):
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


def wait_exit(proc: ProcessHandle, timeout: float) -> bool:
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
    proc: ProcessHandle, timeout: float, closed: Callable[[], bool]
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


# -- ports lost to another process -------------------------------------------------------
_PROC_NET_TCP = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"
_TIME_WAIT = "06"


def ports_in_use(path: str, info: ConnectionInfo) -> PortInUse | None:
    """:class:`PortInUse` for the first port of ``info`` that something holds, else ``None``.

    Each port is bound the way ZeroMQ binds it (``SO_REUSEADDR`` on POSIX), so a port
    whose old connections linger in TIME_WAIT counts as free, as it is to a kernel.
    """
    if info.transport != "tcp":
        return None
    family = socket.AF_INET6 if ":" in info.ip else socket.AF_INET
    for field in PORT_FIELDS:
        port = getattr(info, field)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((info.ip, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return PortInUse(path, field, port)
                return None  # not an address of ours, say: the kernel will say so itself
    return None


def clash_reported(output: str, path: str, info: ConnectionInfo) -> PortInUse | None:
    """:class:`PortInUse` if a kernel's ``output`` says one of ``info``'s ports was taken.

    A probe of the ports (:func:`ports_in_use`, :func:`port_taken_from`) finds nothing
    when the holder was short-lived: a client's connection whose source port happened to
    be ours, or another kernel starting at the same moment (seen in nbclient's suite run
    with two workers). The kernel's own words are evidence then: ipykernel and xeus print
    ZeroMQ's ``Address already in use`` with the address they tried; ipykernel then exits,
    or hangs if it was the IOPub port (seen in CI).
    """
    if "Address already in use" not in output or info.transport != "tcp":
        return None
    for field in PORT_FIELDS:
        port = getattr(info, field)
        if f":{port}" in output:
            return PortInUse(path, field, port, hint="the kernel could not bind it")
    return None


def port_taken_from(kernel: KernelProcess) -> PortInUse | None:
    """:class:`PortInUse` if another process holds a port the (running) kernel has not bound.

    The kernel cannot bind that port any more: ipykernel then exits (shell, stdin,
    control), hangs (IOPub) or answers without a heartbeat (its heartbeat thread dies).
    Linux only (it reads ``/proc``); elsewhere ``None``, and :func:`launch` learns of a
    clash when the kernel exits or times out.
    """
    info = kernel.connection_info
    if info.transport != "tcp":
        return None
    fields = {getattr(info, field): field for field in PORT_FIELDS}
    held = _sockets_on(set(fields), info.ip)
    if not held:
        return None
    ours = _socket_inodes([kernel.pid])
    if any(inode not in ours for _, _, inode in held):
        # A kernel launched through a wrapper binds in a child: look at its whole group.
        ours |= _socket_inodes(_group_members(kernel.pid))
    for port, field in fields.items():
        here = [(state, inode) for p, state, inode in held if p == port]
        if any(state == _LISTEN and inode in ours for state, inode in here):
            continue
        if any(inode not in ours for _, inode in here):
            return PortInUse(kernel.connection_file, field, port, hint="taken by another process")
    return None


def _sockets_on(ports: set[int], ip: str) -> list[tuple[int, str, int]]:
    """(port, state, inode) of the TCP sockets bound to one of ``ports`` on an address
    that overlaps ``ip`` (TIME_WAIT ones aside: they do not stop a bind)."""
    found: list[tuple[int, str, int]] = []
    for table in _PROC_NET_TCP:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            address, _, hex_port = parts[1].partition(":")
            port = int(hex_port, 16)
            state, inode = parts[3], int(parts[9])
            if port in ports and state != _TIME_WAIT and inode and _overlaps(address, ip):
                found.append((port, state, inode))
    return found


def _overlaps(hex_address: str, ip: str) -> bool:
    """Whether a socket bound to ``hex_address`` (as ``/proc/net/tcp`` writes it) stops a
    bind to ``ip`` on the same port: the same address, or either one a wildcard."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":  # the table writes each 32-bit word in host order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    held = ipaddress.ip_address(raw)
    try:
        wanted = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return True  # a host name: any address may be it
    held_v4 = held.ipv4_mapped if isinstance(held, ipaddress.IPv6Address) else None
    wanted_v4 = wanted.ipv4_mapped if isinstance(wanted, ipaddress.IPv6Address) else None
    return (
        (held_v4 or held) == (wanted_v4 or wanted) or held.is_unspecified or wanted.is_unspecified
    )


def _socket_inodes(pids: Iterable[int]) -> set[int]:
    inodes: set[int] = set()
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"{folder}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def process_states() -> Iterator[tuple[int, list[str]]]:
    """Every process's id and the fields of ``/proc/<pid>/stat`` after its name (state,
    parent, process group, ...). Linux only: nothing elsewhere."""
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # gone meanwhile
            yield int(entry), stat.rsplit(")", 1)[-1].split()


def _group_members(pgid: int) -> list[int]:
    return [pid for pid, fields in process_states() if len(fields) > 2 and int(fields[2]) == pgid]


# -- the kernel process ------------------------------------------------------------------
def remove_files(paths: Iterable[str]) -> None:
    """Remove files made for a kernel, and folders (once empty); missing ones are fine."""
    for path in paths:
        with contextlib.suppress(OSError):
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)


def _release(proc: ProcessHandle, log: KernelLog, files: list[str]) -> None:
    terminate(proc, STOP_GRACE)
    log.close()
    remove_files(files)


class KernelProcess:
    """A kernel running in a child process group of its own; stop it with :meth:`stop`
    or a ``with`` block.

    It is also stopped when this handle is garbage-collected or at interpreter exit,
    and an ipykernel exits by itself if this process dies (``JPY_PARENT_PID``). Made
    by :func:`launch` (through :func:`~kernelwire.run_kernel_in_process` or
    :class:`~kernelwire.Kernel`).
    """

    def __init__(
        self,
        proc: ProcessHandle,
        connection_file: str,
        info: ConnectionInfo,
        log: KernelLog,
        owned_files: Sequence[str] = (),
    ) -> None:
        self.proc = proc
        self.connection_file = connection_file
        self.connection_info = info
        self.log = log
        self._finalizer = weakref.finalize(self, _release, proc, log, list(owned_files))

    @property
    def pid(self) -> int:
        """The kernel's process id."""
        return self.proc.pid

    def is_alive(self) -> bool:
        """Whether the kernel process is still running."""
        return self.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit status once the process has ended."""
        return self.proc.poll()

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines the kernel wrote to stdout/stderr."""
        return self.log.tail(lines)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """Stop the kernel (its process group: SIGTERM, then SIGKILL after ``grace``
        seconds) and remove the files made for it. Idempotent; returns the exit code."""
        if self._finalizer.alive:
            terminate(self.proc, grace)
            self._finalizer()
        return self.proc.poll()

    def __enter__(self) -> KernelProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else f"exited {self.exit_code}"
        return f"<KernelProcess pid={self.pid} {self.connection_file} {state}>"


def cleanup(processes: Iterable[KernelProcess], files: Iterable[str], grace: float) -> None:
    """Stop every process (``grace`` seconds after SIGTERM) and remove ``files``."""
    for process in list(processes):
        process.stop(grace)
    remove_files(files)


# -- launching ---------------------------------------------------------------------------
Connect = Callable[[], tuple[str, ConnectionInfo]]
"""Called before each start: writes the connection file to start on; returns it and its info."""


def launch(
    command: Callable[[str], Sequence[str]],
    connect: Connect,
    *,
    retries: int = PORT_RETRIES,
    owns_connection_file: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: bytes | None = None,
    timeout: float = STARTUP_TIMEOUT,
    what: str = "kernel",
    stack_signal: int | None = None,
    start: Starter | None = None,
) -> KernelProcess:
    """Start a kernel and wait until it answers; on a lost port, start it again on new ones.

    ``command(connection_file)`` is its command line; ``connect()`` writes the
    connection file of each try (fresh ports from :func:`reserved_connection_info` when
    a retry may move them; ``retries=1`` when the ports are fixed). A port clash is
    found from the operating system: while the kernel starts, a port it has not bound is
    held by another process (:func:`port_taken_from`), or after it exited or timed out,
    one of its ports is still held (:func:`ports_in_use`); and, when the holder is gone
    by then, from the kernel's own words (:func:`clash_reported`). ``stdin`` is written
    to the kernel's standard input. The process is removed (and with
    ``owns_connection_file``, its connection file too) by :meth:`KernelProcess.stop`,
    garbage collection or interpreter exit. A kernel that
    dumps its threads' stacks on ``stack_signal`` is asked for them when it times out
    (by default SIGABRT, when ``PYTHONFAULTHANDLER`` is in the kernel's environment).
    ``start`` starts the process instead of :func:`spawn` (a fork server's kernels; it
    cannot take ``stdin``).

    Raises :class:`KernelLaunchError` if the command cannot run, :class:`KernelDied`
    (with the kernel's output) if it exits during start-up, :class:`KernelTimeout` after
    ``timeout`` seconds, :class:`PortInUse` if it lost a port on its last try.
    """
    if stack_signal is None and (os.environ if env is None else env).get("PYTHONFAULTHANDLER"):
        # A Python kernel with faulthandler on prints every thread's stack on SIGABRT.
        stack_signal = getattr(signal, "SIGABRT", None)
    for attempt in itertools.count(1):
        path, info = connect()
        kernel = _spawn(
            command(path), path, info, env, cwd, stdin, owns_connection_file, what, start
        )
        try:
            _wait_until_answering(kernel, timeout, what, stack_signal)
            return kernel
        except (KernelDied, KernelTimeout, PortInUse) as exc:
            kernel.stop(0.5)
            clash = (
                exc
                if isinstance(exc, PortInUse)
                else ports_in_use(path, info)
                or clash_reported(getattr(exc, "stderr", None) or str(exc), path, info)
            )
            if clash is None:
                raise
            if attempt >= retries:
                if clash is exc:
                    raise
                raise clash from exc
            log.info("%s: %s; starting it again on new ports", what, clash)
    raise AssertionError("unreachable")  # pragma: no cover


def _spawn(
    argv: Sequence[str],
    path: str,
    info: ConnectionInfo,
    env: Mapping[str, str] | None,
    cwd: str | None,
    stdin: bytes | None,
    owns_connection_file: bool,
    what: str,
    start: Starter | None = None,
) -> KernelProcess:
    kernel_log = KernelLog()
    proc: ProcessHandle
    try:
        if start is not None and stdin is None:
            proc = start(argv, kernel_log, env, cwd)
        else:
            proc = spawn(
                argv, kernel_log, env=env, cwd=cwd, stdin=None if stdin is None else subprocess.PIPE
            )
    except OSError as exc:
        kernel_log.close()
        if owns_connection_file:
            remove_files([path])
        where = f" in {cwd!r}" if cwd else ""
        raise KernelLaunchError(
            f"{what}: cannot run {argv[0]!r}{where}: {exc.strerror or exc}: {exc.filename!r}"
        ) from None
    kernel = KernelProcess(proc, path, info, kernel_log, [path] if owns_connection_file else [])
    if stdin is not None:
        assert isinstance(proc, subprocess.Popen) and proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it exited: the wait says why
            proc.stdin.write(stdin)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    return kernel


def _wait_until_answering(
    kernel: KernelProcess, timeout: float, what: str, stack_signal: int | None = None
) -> None:
    """Wait until the kernel answers ``kernel_info`` *and* its IOPub idle is in, and its
    heartbeat answers.

    While the kernel starts, one ``kernel_info_request`` waits for it (ZeroMQ delivers
    it once the kernel has bound its shell port); a question every half second, as
    before, left dozens queued for a kernel that took seconds to start under load.
    Taking the probe's own statuses means none of them reaches the caller's client
    later. Raises :class:`KernelDied` (with the kernel's output) if the process exits
    first, :class:`PortInUse` if it lost a port, :class:`KernelTimeout` after
    ``timeout`` seconds; with ``stack_signal`` (a kernel that dumps its threads' stacks
    on it), the timeout's message carries them.
    """
    deadline = time.monotonic() + timeout

    def exited() -> KernelDied | None:
        code = kernel.proc.poll()
        if code is None:
            return None
        return KernelDied(
            f"{what} exited during start-up", exit_code=code, stderr=kernel.stderr_tail()
        )

    def connect() -> BlockingKernelClient:
        client = BlockingKernelClient(connection_info=kernel.connection_info)
        client.start_channels(stdin=False, control=False)
        # The process is watched: the heartbeat only tells whether its port is the kernel's.
        client.engine.add_liveness_check(exited)
        return client

    started = time.monotonic()
    client = connect()
    stall = _Stall(kernel.pid)
    first = client.submit(requests.kernel_info())
    try:
        while True:
            died = exited()
            if died is not None:
                raise died
            if stall.check_due():  # a kernel that lost its IOPub port hangs so
                lost = port_taken_from(kernel) or clash_reported(
                    kernel.stderr_tail(), kernel.connection_file, kernel.connection_info
                )
                if lost is not None:
                    raise lost
            left = deadline - time.monotonic()
            if left <= 0:
                raise _startup_timeout(kernel, timeout, what, stall, stack_signal)
            try:
                first.reply(min(0.5, left))
                break
            except KernelTimeout:
                continue
            except ReplyLost:
                # Its idle came and the reply did not, within the grace: the kernel runs
                # and handled the request. Under heavy load (64 kernels starting on two
                # cores, seen in a full run) the reply can trail its idle by more than
                # the grace; the check below asks again.
                break
        answered = time.monotonic()
        tries = 0
        while True:
            # It is up: the IOPub join and one more round take milliseconds. A connection
            # that brings nothing on IOPub for IOPUB_SILENCE seconds is replaced by a
            # fresh one (seen once in CI: a kernel idle, answering on shell, and not one
            # IOPub message in the 170 s left).
            left = deadline - time.monotonic()
            try:
                client.wait_for_ready(min(max(left, 5.0), IOPUB_SILENCE))
                break
            except KernelTimeout:
                tries += 1
                heard = client.engine.messages_read("iopub")
                if time.monotonic() >= deadline:
                    detail = (
                        f"it answered kernel_info {answered - started:.1f} s after the "
                        f"launch; then {tries} connection(s) to its IOPub port waited "
                        f"{time.monotonic() - answered:.1f} s for its statuses "
                        f"(the last one read {heard} IOPub message(s))"
                    )
                    raise _startup_timeout(
                        kernel, timeout, what, stall, stack_signal, detail
                    ) from None
                log.warning(
                    "%s answers on shell but IOPub brought %d message(s) in %.0f s: "
                    "connecting again",
                    what,
                    heard,
                    IOPUB_SILENCE,
                )
                first.discard()
                client.stop_channels()
                client = connect()
                first = client.submit(requests.kernel_info())
        # ipykernel binds its heartbeat in a thread of its own, whose failure leaves a
        # kernel that answers requests and never its heartbeat.
        if not client.is_alive():
            lost = port_taken_from(kernel)
            if lost is not None:
                raise lost
    finally:
        first.discard()
        client.stop_channels()


def _startup_timeout(
    kernel: KernelProcess,
    timeout: float,
    what: str,
    stall: _Stall,
    stack_signal: int | None,
    detail: str = "",
) -> KernelStartTimeout:
    """The error for a kernel that did not answer in time: how much CPU it used, what it
    did answer (``detail``), and its threads' stacks if it can be asked for them."""
    cpu = "" if stall.cpu is None else f" (it used {stall.cpu / _CLOCK_TICKS:.1f} s of CPU)"
    lines = 40
    if (
        stack_signal is not None
        and kernel.proc.poll() is None
        and _catches(kernel.pid, stack_signal)
    ):
        before = kernel.log.size()
        with contextlib.suppress(ProcessLookupError):
            os.kill(kernel.pid, stack_signal)
            give_up = time.monotonic() + 2.0
            while kernel.log.size() == before and time.monotonic() < give_up:
                time.sleep(0.05)
            time.sleep(0.2)  # the rest of the dump
            lines = 400
    return KernelStartTimeout(
        f"{what} did not answer within {timeout:g} s{cpu}"
        + (f": {detail}" if detail else "")
        + f"\n{kernel.stderr_tail(lines)}"
    )


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` handles ``sig`` (a kernel too slow to have set its handler
    up yet would be killed by it); True where ``/proc`` cannot tell."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return True


class _Stall:
    """Says when a starting kernel that does not answer is worth a look for a lost port:
    when it used no CPU since the last round (it hangs rather than starts), at most once
    per :data:`CLASH_CHECK_WAIT`, doubled after each look. Linux only (``/proc``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu = self._cpu()
        self.wait = CLASH_CHECK_WAIT
        self.next = time.monotonic() + self.wait

    def _cpu(self) -> int | None:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[-1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        except (OSError, IndexError, ValueError):
            return None

    def check_due(self) -> bool:
        cpu, self.cpu = self.cpu, self._cpu()
        now = time.monotonic()
        if self.cpu is None or self.cpu != cpu or now < self.next:
            return False
        self.wait *= 2
        self.next = now + self.wait
        return True
