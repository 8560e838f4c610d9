"""A kernel started from a spec: launch, ready, interrupt, restart, shut down, never leaked.

>>> with start_kernel("python3") as kernel:            # doctest: +SKIP
...     client = kernel.client()
...     client.execute_interactive("x = 1")
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..client.async_client import AsyncKernelClient
from ..client.base import KernelClientBase
from ..client.blocking import BlockingKernelClient
from ..connection_file import write_connection_file
from ..errors import KernelDied, KernelLaunchError, KernelRestarted, KernelwireError
from ..execution import RunsCode
from ..protocol.connection import ConnectionInfo, Transport
from .forkserver import ForkServer, shared_fork_server
from .launcher import (
    CLOSING_GRACE,
    PORT_RETRIES,
    STARTUP_TIMEOUT,
    Connect,
    KernelProcess,
    ProcessHandle,
    Starter,
    child_env,
    cleanup,
    launch,
    reserved_connection_info,
    signal_group,
    wait_exit,
    wait_exit_after_reply,
)
from .specs import KernelSpec, get_kernel_spec

log = logging.getLogger("kernelwire.kernel")

SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True)
class KernelEvent:
    """Something that happened to a kernel: ``started``, ``died``, ``restarted``, ``shutdown``."""

    kind: str
    kernel_id: str
    exit_code: int | None = None
    detail: str = ""


EventHandler = Callable[[KernelEvent], None]


class Kernel(RunsCode):
    """A kernel process started from a :class:`KernelSpec`, and its connection file.

    Use :func:`start_kernel`. Leaving a ``with`` block, :meth:`shutdown`, garbage
    collection and interpreter exit all stop the process and remove the file.
    ``auto_restart`` restarts a kernel that died (at most ``restart_limit`` times),
    reporting ``died`` and ``restarted`` events to ``on_event``. ``extra_arguments`` are
    appended to the spec's command line. ``fork=True`` forks the kernel from a template
    shared by the spec's ``fork=True`` kernels (made on first use), a
    :class:`~kernelwire.ForkServer` forks it from that one; each restart is a fresh fork.
    Where a fork would not be sound the kernel is spawned, the reason logged.
    """

    def __init__(
        self,
        spec: KernelSpec,
        *,
        kernel_id: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        transport: Transport = "tcp",
        encrypt: bool | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        auto_restart: bool = False,
        restart_limit: int = 5,
        on_event: EventHandler | None = None,
        extra_arguments: Sequence[str] = (),
        fork: bool | ForkServer = False,
    ) -> None:
        self.spec = spec
        self.fork = fork
        self.extra_arguments = list(extra_arguments)
        self.kernel_id = kernel_id or os.urandom(8).hex()
        self.cwd = cwd
        self.extra_env = dict(env or {})
        self.transport = transport
        self.encrypt = spec.supports_curve if encrypt is None else encrypt
        self.startup_timeout = startup_timeout
        self.auto_restart = auto_restart
        self.restart_limit = restart_limit
        self.restart_count = 0
        self.on_event = on_event
        self.events: list[KernelEvent] = []
        self.connection_info: ConnectionInfo | None = None
        self.connection_file: str | None = None
        self._process: KernelProcess | None = None
        self._processes: list[KernelProcess] = []
        self._files: list[str] = []
        self._clients: weakref.WeakSet[KernelClientBase[Any, Any]] = weakref.WeakSet()
        self._expected_exit = False
        self._lock = threading.RLock()
        self._monitor: threading.Thread | None = None
        self._closed = False
        self._run_client: BlockingKernelClient | None = None
        self._finalizer = weakref.finalize(self, cleanup, self._processes, self._files, 1.0)

    # -- state -------------------------------------------------------------------
    @property
    def proc(self) -> ProcessHandle:
        """The running kernel's process (a :class:`subprocess.Popen`, or a
        :class:`~kernelwire.lifecycle.forkserver.ForkedProcess`)."""
        if self._process is None:
            raise KernelwireError("the kernel is not started")
        return self._process.proc

    @property
    def pid(self) -> int:
        """The kernel's process id."""
        return self.proc.pid

    @property
    def exit_code(self) -> int | None:
        """The process's exit status once it has ended."""
        return None if self._process is None else self._process.proc.poll()

    def is_alive(self) -> bool:
        """Whether the kernel process is running."""
        return self._process is not None and self._process.proc.poll() is None

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines the kernel printed."""
        return "" if self._process is None else self._process.log.tail(lines)

    def _emit(self, kind: str, exit_code: int | None = None, detail: str = "") -> None:
        event = KernelEvent(kind, self.kernel_id, exit_code, detail)
        self.events.append(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("a kernel event handler raised")

    def death(self) -> KernelDied | None:
        """A :class:`KernelDied` if the process exited unexpectedly, else ``None``."""
        process = self._process
        if process is None or self._expected_exit:
            return None
        code = process.proc.poll()
        if code is None:
            return None
        return KernelDied(
            f"kernel {self.spec.name} (pid {process.proc.pid}) exited",
            exit_code=code,
            stderr=process.log.tail(20),
        )

    # -- start -------------------------------------------------------------------
    def start(self) -> None:
        """Launch the kernel and wait until it answers (:class:`KernelDied` if it exits first)."""
        with self._lock:
            self._launch(self._new_connection, PORT_RETRIES)
            self._emit("started")
            if self.auto_restart and self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._watch, name=f"kernelwire-monitor-{self.kernel_id}", daemon=True
                )
                self._monitor.start()

    def _new_connection(self) -> tuple[str, ConnectionInfo]:
        info = reserved_connection_info(
            transport=self.transport,
            kernel_name=self.spec.name,
            curve=self.encrypt,
        )
        path, info = write_connection_file(self.connection_file, info)
        if path not in self._files:
            self._files.append(path)
            if info.transport == "ipc":
                self._files.extend(
                    info.url(ch)[len("ipc://") :]
                    for ch in ("shell", "iopub", "stdin", "control", "hb")
                )
                self._files.append(os.path.dirname(info.ip))  # the private ipc folder
        self.connection_file, self.connection_info = path, info
        return path, info

    def _same_connection(self) -> tuple[str, ConnectionInfo]:
        assert self.connection_file is not None and self.connection_info is not None
        return self.connection_file, self.connection_info

    def _launch(self, connect: Connect, retries: int) -> None:
        """Start the kernel's process (see :func:`launch`) and make it the current one."""
        names = {"kernel_id": self.kernel_id}
        if self.cwd is not None:
            names["cwd"] = self.cwd
        try:
            process = launch(
                lambda path: self.spec.command(path, self.extra_arguments, **names),
                connect,
                retries=retries,
                env=child_env({**self.spec.env, **self.extra_env}),
                cwd=self.cwd,
                timeout=self.startup_timeout,
                what=f"kernel {self.spec.name}",
                start=self._starter(),
            )
        except KernelLaunchError as exc:
            raise KernelLaunchError(f"{exc} (spec: {self.spec.resource_dir})") from None
        except BaseException:
            self._expected_exit = False  # a restart that failed: clients hear the kernel is gone
            raise
        self._processes.append(process)
        self._process = process
        self._expected_exit = False

    def _starter(self) -> Starter | None:
        """How the process starts: forked from a template, or spawned (``None``)."""
        if self.fork is False:
            return None
        server = self.fork if isinstance(self.fork, ForkServer) else shared_fork_server(self.spec)
        return server.fork

    # -- clients -----------------------------------------------------------------
    def _attach(self, client: KernelClientBase[Any, Any]) -> None:
        client.engine.add_liveness_check(self.death)
        self._clients.add(client)

    def client(self, **kwargs: Any) -> BlockingKernelClient:
        """A started, ready :class:`BlockingKernelClient`; its waits raise :class:`KernelDied`
        within a fraction of a second if this kernel's process exits."""
        client = BlockingKernelClient(connection_info=self._info(), **kwargs)
        client.connection_file = self.connection_file
        client.start_channels()
        self._attach(client)
        client.wait_for_ready(self.startup_timeout)
        return client

    def async_client(self, **kwargs: Any) -> AsyncKernelClient:
        """A started :class:`AsyncKernelClient` (``await client.wait_for_ready()`` if needed)."""
        client = AsyncKernelClient(connection_info=self._info(), **kwargs)
        client.connection_file = self.connection_file
        client.start_channels()
        self._attach(client)
        return client

    def _info(self) -> ConnectionInfo:
        if self.connection_info is None:
            raise KernelwireError("the kernel is not started")
        return self.connection_info

    @contextlib.contextmanager
    def _control_client(self) -> Iterator[BlockingKernelClient]:
        """A short-lived client for one request of our own (interrupt, shutdown)."""
        with BlockingKernelClient(connection_info=self._info()) as control:
            control.engine.add_liveness_check(self.death)
            yield control

    # -- interrupt, restart, shutdown -----------------------------------------------
    def interrupt(self) -> None:
        """Interrupt the running code: SIGINT, or ``interrupt_request`` as the spec says."""
        if self.spec.interrupt_mode == "message":
            with self._control_client() as control:
                control.interrupt(reply=True, timeout=SHUTDOWN_TIMEOUT)
        elif not signal_group(self.proc, signal.SIGINT):
            raise KernelDied(f"kernel {self.spec.name} is not running", exit_code=self.exit_code)

    def _stop_process(self, now: bool, restart: bool, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        self._expected_exit = True
        if not now and process.proc.poll() is None:
            with self._control_client() as control:
                # Interrupt first, as jupyter_client does: a kernel busy in a loop answers
                # shutdown_request on its control thread but cannot exit until its code
                # stops, so ipykernel 7 waited out the whole timeout (5 s) to be killed.
                # An idle ipykernel ignores it; xeus-python exits on it, as shutting down wants.
                if self.spec.interrupt_mode == "message":
                    control.interrupt()
                else:
                    signal_group(process.proc, signal.SIGINT)
                try:
                    control.shutdown(restart=restart, reply=True, timeout=timeout)
                except KernelwireError as exc:
                    log.debug("shutdown_request to %s failed: %s", self.spec.name, exc)
                    wait_exit(process.proc, timeout)
                else:
                    self._wait_after_reply(process, control, timeout)
        process.stop(1.0)
        with contextlib.suppress(ValueError):
            self._processes.remove(process)

    def _wait_after_reply(
        self, process: KernelProcess, control: BlockingKernelClient, timeout: float
    ) -> None:
        """Wait for a kernel that answered ``shutdown_request`` to exit (see
        :func:`wait_exit_after_reply`); say why, if it has to be terminated."""
        outcome = wait_exit_after_reply(process.proc, timeout, control.engine.peer_disconnected)
        if outcome == "closed":  # a known ipykernel 7 hang: nothing lost
            log.info(
                "kernel %s (pid %d) closed its connections after shutdown_request "
                "but had not exited %g s later; terminating it",
                self.spec.name,
                process.proc.pid,
                CLOSING_GRACE,
            )
        elif outcome == "timeout":
            log.warning(
                "kernel %s (pid %d) answered shutdown_request but had not exited "
                "%g s later; terminating it",
                self.spec.name,
                process.proc.pid,
                timeout,
            )

    def restart(self, now: bool = False, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop the kernel and start a new process on the same connection info.

        The namespace is gone; clients from :meth:`client` stay connected and usable.
        Their requests still waiting when the restart begins fail at once with
        :class:`KernelRestarted`: the old kernel will not answer them.
        """
        with self._lock:
            engines = [c.engine for c in list(self._clients) if c.channels_running]
            lost = KernelRestarted(
                f"kernel {self.spec.name} ({self.kernel_id}) was restarted while the request "
                "waited: its answer will not come"
            )
            for engine in engines:
                engine.fail_pending(lost)
            # Its dropped connection is expected: no heartbeat verdicts meanwhile.
            paused = [engine.pause_liveness() for engine in engines]
            for engine in engines:
                engine.expect_restart()  # before the old process stops (see its doc)
            try:
                self._stop_process(now, True, timeout)
                self._launch(self._same_connection, 1)  # clients stay on these ports
            finally:
                for engine, was_paused in zip(engines, paused, strict=True):
                    engine.reset_after_restart(was_paused)
            self._emit("restarted")

    def shutdown(self, now: bool = False, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Ask the kernel to shut down, then SIGTERM, then SIGKILL; remove the connection file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for client in list(self._clients):
                if client.channels_running:
                    client.engine.expect_stop()
            self._stop_process(now, False, timeout)
            for client in list(self._clients):
                client.stop_channels()
            code = self.exit_code
            self._finalizer()
            self._emit("shutdown", code)

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(0.2)
            with self._lock:
                if self._closed:
                    return
                death = self.death()
                if death is None:
                    continue
                self._emit("died", death.exit_code, death.stderr)
                if self.restart_count >= self.restart_limit:
                    log.warning(
                        "kernel %s died; restart limit %d reached",
                        self.spec.name,
                        self.restart_limit,
                    )
                    return
                self.restart_count += 1
                try:
                    self.restart(now=True)
                except KernelwireError as exc:
                    self._emit("restart_failed", None, str(exc))
                    return

    # -- running code ------------------------------------------------------------
    def _runner(self) -> BlockingKernelClient:
        client = self._run_client
        if client is None or not client.channels_running:
            client = self._run_client = self.client()
        return client

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "stopped"
        return f"<Kernel {self.spec.name} {self.kernel_id} {state}>"


def start_kernel(name: str | KernelSpec = "python3", **options: Any) -> Kernel:
    """Start the kernel called ``name`` (any installed spec, or a spec itself) and wait
    until it answers.

    ``options`` go to :class:`Kernel` (``cwd``, ``env``, ``transport``, ``encrypt``,
    ``startup_timeout``, ``auto_restart``, ``restart_limit``, ``on_event``,
    ``extra_arguments``, ``fork``).
    """
    spec = name if isinstance(name, KernelSpec) else get_kernel_spec(name)
    kernel = Kernel(spec, **options)
    try:
        kernel.start()
    except BaseException:
        kernel.shutdown(now=True)
        raise
    return kernel
