"""Run a kernel in a child process of this one: for scripts, tests and notebooks.

>>> with run_kernel_in_process("/tmp/kernel.json") as kernel:   # doctest: +SKIP
...     print(kernel.pid, kernel.is_alive())
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from types import TracebackType
from typing import IO

from .client.blocking import BlockingKernelClient
from .errors import KernelDied, KernelTimeout, PortInUse
from .protocol.connection import (
    PORT_FIELDS,
    ConnectionInfo,
    load_connection_file,
    write_connection_file,
)

STARTUP_TIMEOUT = 60.0


def check_ports_free(path: str, info: ConnectionInfo) -> None:
    """Raise :class:`PortInUse` if another process already holds a port of ``info``."""
    if info.transport != "tcp":
        return
    family = socket.AF_INET6 if ":" in info.ip else socket.AF_INET
    for field in PORT_FIELDS:
        port = getattr(info, field)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((info.ip, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(path, field, port) from None
                raise


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the kernel's process group, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the kernel itself started


def _cleanup(proc: subprocess.Popen[bytes], files: list[str], log: IO[bytes]) -> None:
    _terminate(proc, 3.0)
    log.close()
    for path in files:
        with contextlib.suppress(OSError):
            os.unlink(path)


class KernelProcess:
    """A kernel running in a child process; stop it with :meth:`stop` or a ``with`` block.

    The kernel is also stopped when this handle is garbage-collected or at
    interpreter exit, and it exits by itself if this process dies.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        connection_file: str,
        info: ConnectionInfo,
        log_path: str,
        log: IO[bytes],
        owned_files: list[str],
    ) -> None:
        self.proc = proc
        self.connection_file = connection_file
        self.connection_info = info
        self.log_path = log_path
        self._finalizer = weakref.finalize(self, _cleanup, proc, owned_files, log)

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
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Stop the kernel (its process group) and remove the files made for it. Idempotent."""
        self._finalizer()

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


def _kernel_payload(kernel_class: type | None) -> bytes:
    if kernel_class is None:
        return b""
    from ipykernel.kernelbase import Kernel

    if not (isinstance(kernel_class, type) and issubclass(kernel_class, Kernel)):
        raise TypeError(
            f"kernel_class must be a subclass of ipykernel.kernelbase.Kernel, got {kernel_class!r}"
        )
    import cloudpickle

    module = sys.modules.get(kernel_class.__module__)
    if kernel_class.__module__ != "__main__" and getattr(module, "__file__", None):
        return bytes(cloudpickle.dumps(("import", kernel_class)))
    # Defined in __main__, python -c, stdin or a notebook cell: send the class body by value
    # and let the child build the class again, so traitlets sets its class up afresh.
    probe = type("Probe", kernel_class.__bases__, {})
    own = {
        name: value
        for name, value in vars(kernel_class).items()
        if name not in vars(probe) or name in ("__doc__",)
    }
    return bytes(cloudpickle.dumps(("build", kernel_class.__name__, kernel_class.__bases__, own)))


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import what this process imports (a kernel class from a test module).
    paths = [p for p in sys.path if p] + env.get("PYTHONPATH", "").split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    # ipykernel polls this pid and exits when it goes away: no orphan if we are killed.
    env["JPY_PARENT_PID"] = str(os.getpid())
    env.pop("JPY_SESSION_NAME", None)
    return env


def run_kernel_in_process(
    connection_file: str | os.PathLike[str] | None = None,
    kernel_class: type | None = None,
    *,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> KernelProcess:
    """Start an IPython kernel (or ``kernel_class``) in a child process; return once it answers.

    ``connection_file`` is used as it is if it exists (its ports must be free:
    :class:`PortInUse` otherwise), or written with free ports and a fresh key.
    Raises :class:`KernelDied` with the kernel's output if it exits during start-up,
    :class:`KernelTimeout` if it does not answer within ``startup_timeout`` seconds.
    """
    payload = _kernel_payload(kernel_class)
    owned: list[str] = []
    if connection_file is not None and os.path.exists(connection_file):
        path = os.fspath(connection_file)
        info = load_connection_file(path)
        check_ports_free(path, info)
    else:
        path, info = write_connection_file(connection_file)
        owned.append(path)
    fd, log_path = tempfile.mkstemp(prefix="kernelwire-kernel-", suffix=".log")
    log = os.fdopen(fd, "wb")
    owned.append(log_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernelwire._launch", path],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_child_env(),
        start_new_session=True,
    )
    kernel = KernelProcess(proc, path, info, log_path, log, owned)
    try:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(payload)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        _wait_until_answering(kernel, startup_timeout)
    except BaseException:
        kernel.stop()
        raise
    return kernel


def _wait_until_answering(kernel: KernelProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = BlockingKernelClient(connection_info=kernel.connection_info)
    client.start_channels(stdin=False, hb=False, control=False)
    try:
        # Wait until a kernel_info's reply *and* its IOPub idle are in, so that no status
        # of this probe reaches the caller's own client later.
        while True:
            if not kernel.is_alive():
                raise KernelDied(
                    f"kernel for {kernel.connection_file} exited during start-up",
                    exit_code=kernel.exit_code,
                    stderr=kernel.stderr_tail(),
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelTimeout(
                    f"kernel for {kernel.connection_file} did not answer within {timeout:g} s\n"
                    + kernel.stderr_tail()
                )
            try:
                client.wait_for_ready(min(0.5, left))
                return
            except KernelTimeout:
                continue
    finally:
        client.stop_channels()
