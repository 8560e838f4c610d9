"""Kernels forked from a warm template: ready in milliseconds instead of ipykernel's import.

>>> with ForkServer("python3", preload=["numpy"], prelude="import numpy as np") as forks:
...     with forks.start_kernel(cwd="/tmp") as kernel:                # doctest: +SKIP
...         kernel.run("np.random.rand()").text

A template process, started with the spec's own interpreter, imports ipykernel (and the
``preload`` modules), runs ``prelude`` (whose names every kernel finds in its namespace)
and forks on request. Each child becomes what ``python -m ipykernel_launcher -f FILE``
would be: its own session and process group, connection file, cwd, environment, log,
random generators, and no file descriptor of the template or of another kernel. The
launcher does the rest as for a spawned kernel (ports, the wait until it answers), and
:class:`~kernelwire.Kernel` handles it the same way (interrupt, restart: a fresh fork,
death detection, shutdown).

Forking falls back to spawning, with the reason logged, when it would not be sound:
a spec that does not run ``python -m ipykernel_launcher``, another interpreter, an
environment whose ``PYTHON*`` variables (read at interpreter start) differ from the
template's, a platform without ``fork``, a template running threads or holding sockets,
a fork or a template that fails. The template exits when its owner closes it or dies
(its command pipe ends), killing its kernels; a kernel also gets SIGKILL when its
template dies (Linux) and exits by itself within a second elsewhere (ipykernel's check
of ``JPY_PARENT_PID``).

Every kernel forked from one template shares the template's hash randomization seed
(``PYTHONHASHSEED`` is read at interpreter start); everything else starts fresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._fdwait import readable
from ..errors import KernelLaunchError
from .launcher import (
    STARTUP_TIMEOUT,
    KernelLog,
    ProcessHandle,
    child_env,
    file_command,
    spawn,
)
from .specs import KernelSpec, get_kernel_spec

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("kernelwire.forkserver")

FORK_TIMEOUT = 30.0
"""Seconds a fork request waits for the template's answer before the kernel is spawned."""
CLOSE_TIMEOUT = 10.0
"""Seconds a closed template gets to kill its kernels and exit before it is killed."""

_TEMPLATE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_forkserver_template.py"
)
_IPYKERNEL_MODULES = ("ipykernel_launcher", "ipykernel")


class ForkedProcess:
    """A kernel process forked by a template: the part of :class:`subprocess.Popen` the
    launcher uses (``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``).

    Its exit status comes from the template (its parent), which reaps it and reports the
    exit at once over its pipe.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()

    def exited(self, code: int) -> None:
        """Record the exit status (called when the template reports it)."""
        if self.returncode is None:
            self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        """The exit status, or ``None`` while the process runs."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status; :class:`subprocess.TimeoutExpired` after ``timeout``."""
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked kernel {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process, if it still runs."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM the process."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process."""
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self.pid} returncode={self.returncode}>"


class _Lines:
    """JSON lines read from a pipe's descriptor, each within a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def read(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; ``None`` at the end of the pipe. :class:`TimeoutError` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not readable([self.fd], left):
                raise TimeoutError
            data = os.read(self.fd, 1 << 16)
            if not data:
                return None
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


class _Answer:
    """The template's answer to one fork request, handed from the reader thread."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.process: ForkedProcess | None = None
        self.refused = ""


def _close_template(proc: subprocess.Popen[bytes], commands: int, template_log: KernelLog) -> None:
    """End the template: its command pipe closes, it kills its kernels and exits."""
    with contextlib.suppress(OSError):
        os.close(commands)
    try:
        proc.wait(CLOSE_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    template_log.close()


class ForkServer:
    """A template process for the kernel spec ``kernel_name`` that forks ready kernels.

    ``preload`` modules are imported in the template and ``prelude`` is run there (its
    names are in every kernel's namespace). Use it as a context manager, or call
    :meth:`start` and :meth:`close`; closing it stops the kernels still running from it.
    :meth:`start_kernel` returns the same :class:`~kernelwire.Kernel` as
    :func:`~kernelwire.start_kernel`. Where a fork would not be sound the kernel is
    spawned instead, and the reason logged (``kernelwire.forkserver``, a warning).

    >>> with ForkServer("python3") as forks:                           # doctest: +SKIP
    ...     with forks.start_kernel() as kernel:
    ...         print(kernel.run("1 + 1").text)
    """

    def __init__(
        self,
        kernel_name: str | KernelSpec = "python3",
        preload: Sequence[str] = (),
        prelude: str = "",
        *,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.spec = (
            kernel_name if isinstance(kernel_name, KernelSpec) else get_kernel_spec(kernel_name)
        )
        self.preload = list(preload)
        self.prelude = prelude
        self.startup_timeout = startup_timeout
        self.pid: int | None = None
        """The template's process id, once started."""
        self.unavailable: str | None = None
        """Why kernels of this server are spawned rather than forked, if they are."""
        self._python = self.spec.command("")[0]
        self._template_env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._commands = -1
        self._lock = threading.Lock()
        self._started = False
        self._next_id = 0
        self._answers: dict[int, _Answer] = {}
        self._forked: dict[int, ForkedProcess] = {}
        self._warned: set[str] = set()
        self._log: KernelLog | None = None
        self._finalizer: weakref.finalize[Any, ForkServer] | None = None

    # -- the template ------------------------------------------------------------
    def start(self) -> ForkServer:
        """Start the template and wait until it has imported everything (idempotent).

        Raises :class:`KernelLaunchError` if the template cannot start (a preload
        module that fails to import, a prelude that raises). A spec or platform that
        cannot fork is no error: its kernels are spawned (see :attr:`unavailable`).
        """
        with self._lock:
            if self._started:
                return self
            self._started = True
            self.unavailable = self._cannot_serve()
            if self.unavailable is None:
                self._start_template()
        return self

    def _cannot_serve(self) -> str | None:
        if not hasattr(os, "fork"):
            return "this platform has no fork()"
        argv = self.spec.argv
        if len(argv) < 3 or argv[1] != "-m" or argv[2] not in _IPYKERNEL_MODULES:
            return (
                f"kernel spec {self.spec.name!r} does not run 'python -m ipykernel_launcher' "
                f"(its command: {' '.join(argv)})"
            )
        return None

    def _start_template(self) -> None:
        command_read, command_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self._log = KernelLog()
        self._template_env = child_env(self.spec.env)
        argv = file_command(
            self._python,
            _TEMPLATE,
            str(command_read),
            str(reply_write),
            json.dumps(self.preload),
            self.prelude,
        )
        try:
            proc = spawn(
                argv, self._log, env=self._template_env, pass_fds=(command_read, reply_write)
            )
        except OSError as exc:
            for fd in (command_read, command_write, reply_read, reply_write):
                os.close(fd)
            self._log.close()
            raise KernelLaunchError(
                f"fork server for {self.spec.name}: cannot run {self._python!r}: "
                f"{exc.strerror or exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):  # the template's ends
                os.close(command_read)
                os.close(reply_write)
        self._proc, self._commands = proc, command_write
        self._finalizer = weakref.finalize(self, _close_template, proc, command_write, self._log)
        lines = _Lines(reply_read)
        try:
            first = lines.read(self.startup_timeout)
        except TimeoutError:
            first = {"error": f"no answer within {self.startup_timeout:g} s"}
        if first is None or "ready" not in first:
            why = "it exited" if first is None else first.get("error", repr(first))
            tail = self._log.tail()
            os.close(reply_read)
            self._finalizer()
            raise KernelLaunchError(
                f"fork server for {self.spec.name} (preload {self.preload}) did not start: "
                f"{why}\n{tail}"
            )
        self.pid = int(first["ready"])
        if first.get("unsafe"):
            self.unavailable = str(first["unsafe"])
        reader = threading.Thread(
            target=self._read_replies,
            args=(lines,),
            name=f"kernelwire-forkserver-{self.pid}",
            daemon=True,
        )
        reader.start()

    def _read_replies(self, lines: _Lines) -> None:
        """The reader thread: hands answers to fork requests and exits to processes."""
        try:
            while True:
                message = lines.read(None)
                if message is None:
                    break
                self._dispatch(message)
        finally:
            os.close(lines.fd)
            code = None if self._proc is None else self._proc.wait()
            with self._lock:
                self.unavailable = self.unavailable or f"the template exited (status {code})"
                answers, self._answers = list(self._answers.values()), {}
                forked, self._forked = list(self._forked.values()), {}
            for answer in answers:
                answer.refused = self.unavailable
                answer.ready.set()
            for process in forked:  # its kernels got SIGKILL with it (or from it)
                process.exited(-signal.SIGKILL)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            with self._lock:
                process = self._forked.pop(int(message["exited"]), None)
            if process is not None:
                process.exited(int(message["status"]))
            return
        process = None
        with self._lock:
            answer = self._answers.pop(int(message["id"]), None)
            if "pid" in message:
                process = ForkedProcess(int(message["pid"]))
                self._forked[process.pid] = process
        if answer is None:  # its requester gave up waiting: the kernel is nobody's
            if process is not None:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
            return
        if process is not None:
            answer.process = process
        else:
            answer.refused = str(message.get("refused"))
        answer.ready.set()

    def close(self) -> None:
        """Stop the template, and with it the kernels still running from it."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> ForkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- kernels -----------------------------------------------------------------
    def start_kernel(self, **options: Any) -> Kernel:
        """Fork a kernel and wait until it answers; ``options`` as for
        :func:`~kernelwire.start_kernel` (``cwd``, ``env``, ``extra_arguments``, ...)."""
        from .kernel import start_kernel

        return start_kernel(self.spec, fork=self, **options)

    def fork(
        self,
        argv: Sequence[str],
        kernel_log: KernelLog,
        env: Mapping[str, str] | None,
        cwd: str | None,
    ) -> ProcessHandle:
        """Start the kernel command line ``argv`` by forking the template, or by spawning
        it (the reason logged) where a fork would not be sound. A launcher ``Starter``."""
        try:
            self.start()
        except KernelLaunchError as exc:
            self.unavailable = str(exc)
        env = dict(os.environ if env is None else env)
        reason = self.unavailable or self._cannot_fork(argv, env)
        if reason is None:
            try:
                process, reason = self._request(argv, kernel_log, env, cwd)
            finally:
                kernel_log.forget_name()  # the fork has it open (or there is no fork)
            if process is not None:
                return process
        self._fall_back(reason)
        return spawn(argv, kernel_log, env=env, cwd=cwd)

    def _cannot_fork(self, argv: Sequence[str], env: Mapping[str, str]) -> str | None:
        if list(argv[1:3]) != list(self.spec.argv[1:3]) or argv[0] != self._python:
            return f"the command {' '.join(argv[:3])} is not the template's {self._python}"
        for name in sorted(set(env) | set(self._template_env)):
            if name.startswith("PYTHON") and env.get(name) != self._template_env.get(name):
                return (
                    f"the kernel's environment sets {name} (read at interpreter start) "
                    "other than the template's"
                )
        return None

    def _request(
        self, argv: Sequence[str], kernel_log: KernelLog, env: dict[str, str], cwd: str | None
    ) -> tuple[ForkedProcess | None, str]:
        """Ask the template for a kernel: its process, or why there is none."""
        answer = _Answer()
        with self._lock:
            if self.unavailable is not None:
                return None, self.unavailable
            self._next_id += 1
            request_id = self._next_id
            self._answers[request_id] = answer
            fork = {
                "args": list(argv[3:]),
                "cwd": cwd or os.getcwd(),
                "env": env,
                "log": kernel_log.path,
            }
            line = (json.dumps({"id": request_id, "fork": fork}) + "\n").encode()
            try:
                # Under the lock: a line longer than the pipe's atomic size must not
                # interleave with another thread's.
                view = memoryview(line)
                while view:
                    view = view[os.write(self._commands, view) :]
            except OSError as exc:
                del self._answers[request_id]
                return None, f"the template does not take requests ({exc})"
        if not answer.ready.wait(FORK_TIMEOUT):
            with self._lock:
                self._answers.pop(request_id, None)
            if not answer.ready.is_set():
                return None, f"the template did not fork within {FORK_TIMEOUT:g} s"
        return answer.process, answer.refused

    def _fall_back(self, reason: str) -> None:
        # Once per reason at warning level: a pool refilling must not flood the log.
        level = logging.DEBUG if reason in self._warned else logging.WARNING
        self._warned.add(reason)
        log.log(level, "kernel %s is spawned, not forked: %s", self.spec.name, reason)

    def __repr__(self) -> str:
        state = "not started" if not self._started else f"template pid {self.pid}"
        if self.unavailable:
            state += f", spawning ({self.unavailable})"
        return f"<ForkServer {self.spec.name} {state}>"


_shared: dict[tuple[Any, ...], ForkServer] = {}
_shared_lock = threading.Lock()


def shared_fork_server(spec: KernelSpec) -> ForkServer:
    """The template shared by every ``fork=True`` kernel of ``spec`` in this process, made
    (not started: the first fork starts it) on first use and closed at exit."""
    key = (spec.name, spec.resource_dir, spec.argv, tuple(sorted(spec.env.items())))
    with _shared_lock:
        server = _shared.get(key)
        if server is None:
            server = _shared[key] = ForkServer(spec)
        return server
