"""Run a kernel in a child process of this one: for scripts, tests and notebooks.

>>> with run_kernel_in_process("/tmp/kernel.json") as kernel:   # doctest: +SKIP
...     print(kernel.pid, kernel.is_alive())
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import weakref
from types import TracebackType

from .errors import PortInUse
from .lifecycle.launcher import KernelLog, child_env, spawn, terminate, wait_until_answering
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


def _cleanup(proc: subprocess.Popen[bytes], files: list[str], log: KernelLog) -> None:
    terminate(proc, 3.0)
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
        log: KernelLog,
        owned_files: list[str],
    ) -> None:
        self.proc = proc
        self.connection_file = connection_file
        self.connection_info = info
        self.log = log
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
        return self.log.tail(lines)

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
    log = KernelLog()
    # The child must import what this process imports (a kernel class from a test module).
    paths = [p for p in sys.path if p] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
    env = child_env({"PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in paths if p))})
    argv = [sys.executable, "-m", "kernelwire._launch", path]
    proc = spawn(argv, log, env=env, stdin=subprocess.PIPE)
    kernel = KernelProcess(proc, path, info, log, owned)
    try:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(payload)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        what = f"kernel for {kernel.connection_file}"
        wait_until_answering(info, proc, log, startup_timeout, what)
    except BaseException:
        kernel.stop()
        raise
    return kernel
