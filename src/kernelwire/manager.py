"""``kernelwire.manager``: jupyter_client's kernel managers, run by kernelwire.

:class:`KernelManager` and :class:`AsyncKernelManager` subclass jupyter_client's classes
of the same names, so every tool that checks for them (nbclient's and papermill's
``kernel_manager_class``, jupyter_server's ``MultiKernelManager``) takes them, and
jupyter_client's configuration traits (``kernel_name``, ``shutdown_wait_time``,
``transport_encryption``, ``config``, ``parent``, ``log``, ...) work. The work is
kernelwire's: a :class:`kernelwire.Kernel` launches the process (ports reserved per
process, a retry on a clash), waits until it answers, interrupts, restarts on the same
connection info and shuts down with escalation; ``client()`` gives kernelwire's
clients, whose waits raise :class:`~kernelwire.KernelDied` when the process exits and
which keep working across ``restart_kernel``.

>>> from kernelwire.manager import start_new_kernel          # doctest: +SKIP
>>> km, kc = start_new_kernel(kernel_name="python3")          # doctest: +SKIP
>>> kc.execute_interactive("print(1)")                        # doctest: +SKIP
1
>>> kc.stop_channels(); km.shutdown_kernel(now=True)          # doctest: +SKIP

Needs jupyter_client (``pip install 'kernelwire[jupyter]'``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .compat import require_jupyter_client

require_jupyter_client("kernelwire.manager")

from jupyter_client import manager as _jc  # noqa: E402
from traitlets import default  # noqa: E402

from . import kernelspec  # noqa: E402
from ._threads import in_thread  # noqa: E402
from .client.async_client import AsyncKernelClient  # noqa: E402
from .client.base import JUPYTER_CONNECTION_KEYWORDS, KernelClientBase  # noqa: E402
from .client.blocking import BlockingKernelClient  # noqa: E402
from .errors import KernelwireError  # noqa: E402
from .lifecycle.kernel import Kernel  # noqa: E402
from .lifecycle.launcher import signal_group, wait_exit  # noqa: E402
from .lifecycle.specs import KernelSpec  # noqa: E402
from .protocol.connection import PORT_FIELDS, ConnectionInfo  # noqa: E402

if TYPE_CHECKING:
    import zmq
    from jupyter_client import kernelspec as jc_kernelspec
    from jupyter_client import session as jc_session

log = logging.getLogger("kernelwire.manager")

# jupyter_client passes what start_kernel() gets that it does not know on to Popen;
# kernelwire captures the kernel's output itself, so these are accepted and unused.
_POPEN_OPTIONS = frozenset(
    {"stdout", "stderr", "stdin", "independent", "close_fds", "start_new_session", "executable"}
)

# transport_encryption (jupyter_client 8.10) -> Kernel(encrypt=...): "auto" lets the
# kernel spec decide, as jupyter_client does.
_ENCRYPTION = {"disabled": False, "auto": None, "required": True}


class _KernelwireManager:
    """The methods both managers share: a :class:`Kernel` underneath, and the
    jupyter_client connection traits kept equal to its connection info."""

    _kernelwire_kernel: Kernel | None = None
    _kernelwire_launch: dict[str, Any] | None = None

    # The attributes below come from jupyter_client's KernelManager (traits).
    kernel_name: str
    kernel_id: str | None
    connection_file: str
    shutdown_wait_time: float
    log: logging.Logger
    data_dir: str
    session: jc_session.Session
    context: zmq.Context[Any]
    client_factory: type[Any]
    if TYPE_CHECKING:  # at run time, a method here would hide jupyter_client's

        @property
        def kernel_spec(self) -> jc_kernelspec.KernelSpec | None: ...
        def trait_has_value(self, name: str) -> bool: ...

    # -- what kernelwire's clients ask their parent ----------------------------------
    def kernelwire_connection_info(self) -> ConnectionInfo | None:
        """The running kernel's connection info (``None`` before it starts)."""
        kernel = self._kernelwire_kernel
        return None if kernel is None else kernel.connection_info

    def kernelwire_attach_client(self, client: KernelClientBase[Any, Any]) -> None:
        """Cover a client of ours with the kernel's death checks and restarts."""
        kernel = self._kernelwire_kernel
        if kernel is not None and client.connection_info == kernel.connection_info:
            kernel._attach(client)

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> kernelspec.KernelSpecManager:
        return kernelspec.KernelSpecManager(data_dir=self.data_dir)

    @property
    def has_kernel(self) -> bool:
        """Whether a kernel was started and not shut down."""
        return self._kernelwire_kernel is not None

    @property
    def kernel(self) -> Kernel | None:
        """The :class:`kernelwire.Kernel` underneath (``None`` when none is running)."""
        return self._kernelwire_kernel

    # -- the sync work, shared by both managers -----------------------------------
    def _spec(self) -> KernelSpec:
        jc_spec = self.kernel_spec
        if jc_spec is None:
            raise KernelwireError("KernelManager: no kernel_name given, so no spec to start")
        metadata = dict(jc_spec.metadata or {})
        return KernelSpec(
            name=self.kernel_name,
            argv=tuple(jc_spec.argv),
            display_name=jc_spec.display_name,
            language=jc_spec.language,
            resource_dir=jc_spec.resource_dir,
            interrupt_mode=jc_spec.interrupt_mode or "signal",
            env=dict(jc_spec.env or {}),
            metadata=metadata,
        )

    def _start(self, **kw: Any) -> None:
        if self._kernelwire_kernel is not None:
            # jupyter_client starts another process and forgets the running one; stopping
            # it first leaves no orphan behind.
            log.info("start_kernel: stopping kernel %s to start a new one", self.kernel_id)
            self._shutdown(now=True)
        self._kernelwire_launch = dict(kw)
        kernel_id = kw.pop("kernel_id", None) or self.kernel_id or str(uuid.uuid4())
        ignored = set(kw) & _POPEN_OPTIONS
        for name in ignored:
            kw.pop(name)
        unknown = set(kw) - {"extra_arguments", "env", "cwd"}
        if unknown:
            raise TypeError(f"start_kernel() got unexpected keywords: {sorted(unknown)}")
        policy = str(getattr(self, "transport_encryption", "disabled")).lower()
        kernel = Kernel(
            self._spec(),
            kernel_id=kernel_id,
            cwd=kw.get("cwd"),
            env=kw.get("env"),
            transport=self.transport,
            encrypt=_ENCRYPTION.get(policy, False),
            extra_arguments=kw.get("extra_arguments") or (),
        )
        if self.connection_file:
            kernel.connection_file = self.connection_file
        try:
            kernel.start()
        except BaseException:
            kernel.shutdown(now=True)
            raise
        self.kernel_id = kernel_id
        self._kernelwire_kernel = kernel
        self._mirror(kernel)

    def _mirror(self, kernel: Kernel) -> None:
        """Make jupyter_client's connection traits say what the kernel was started with."""
        info = kernel.connection_info
        assert info is not None and kernel.connection_file is not None
        self.connection_file = kernel.connection_file
        self.transport = info.transport
        self.ip = info.ip
        for name in PORT_FIELDS:
            setattr(self, name, getattr(info, name))
        session = self.session
        session.signature_scheme = info.signature_scheme
        session.key = info.key_bytes
        if hasattr(self, "curve_publickey"):
            public, secret = info.curve_publickey, info.curve_secretkey
            self.curve_publickey = public.encode() if public else None
            self.curve_secretkey = secret.encode() if secret else None

    def _running(self, what: str) -> Kernel:
        kernel = self._kernelwire_kernel
        if kernel is None:
            raise RuntimeError(f"Cannot {what} kernel. No kernel is running!")
        return kernel

    def _shutdown(self, now: bool = False, restart: bool = False) -> None:
        kernel = self._kernelwire_kernel
        if kernel is None:
            return
        self.shutting_down = True
        try:
            kernel.shutdown(now=now, timeout=self.shutdown_wait_time)
        finally:
            self._kernelwire_kernel = None
            self.shutting_down = False
        self._cleanup_resources(restart)

    def _restart(self, now: bool = False, newports: bool = False, **kw: Any) -> None:
        if self._kernelwire_launch is None:
            raise RuntimeError("Cannot restart the kernel. No previous call to 'start_kernel'.")
        kernel = self._kernelwire_kernel
        if kernel is not None and not kw and not newports:
            # The same process slot and connection info: clients stay connected.
            kernel.restart(now=now, timeout=self.shutdown_wait_time)
            return
        launch = {**self._kernelwire_launch, **kw}
        self._shutdown(now=now)
        if newports:
            self.connection_file = ""
        self._start(**launch)

    def _interrupt(self) -> None:
        self._running("interrupt").interrupt()

    def _signal(self, signum: int) -> None:
        kernel = self._running("signal")
        if not signal_group(kernel.proc, signum):
            raise RuntimeError("Cannot signal kernel. No kernel is running!")

    def _request_shutdown(self, restart: bool = False) -> None:
        kernel = self._running("shut down")
        assert kernel.connection_info is not None
        with BlockingKernelClient(connection_info=kernel.connection_info) as control:
            control.shutdown(restart=restart)

    def _finish_shutdown(self, waittime: float | None = None, restart: bool = False) -> None:
        kernel = self._kernelwire_kernel
        if kernel is None:
            return
        wait_exit(kernel.proc, self.shutdown_wait_time if waittime is None else waittime)
        self._shutdown(now=True, restart=restart)

    def _is_alive(self) -> bool:
        kernel = self._kernelwire_kernel
        return kernel is not None and kernel.is_alive()

    def _cleanup_resources(self, restart: bool = False) -> None:
        # The kernel removed its connection file and ipc sockets when it shut down. The
        # manager's own zmq context (made on first use: kernelwire's clients have theirs)
        # is closed, as jupyter_client's is; a context given to the manager is not.
        if not restart:
            context = self.context
            if getattr(self, "_created_context", False):
                context.destroy(linger=100)

    def _client_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"parent": self, "log": self.log}
        info = self.kernelwire_connection_info()
        if info is not None and not set(kwargs) & (JUPYTER_CONNECTION_KEYWORDS | {"session"}):
            options["connection_info"] = info
        options.update(kwargs)
        for key in ("curve_publickey", "curve_secretkey"):
            if isinstance(options.get(key), bytes):
                options[key] = options[key].decode("ascii")
        return options

    def _configured_client_factory(self) -> type[Any] | None:
        """The client class set by the user (``client_factory`` or ``client_class``),
        or ``None``: by default the managers give kernelwire's clients."""
        return self.client_factory if self.trait_has_value("client_factory") else None

    def _made(self, client: KernelClientBase[Any, Any]) -> None:
        if client.connection_file is None and self.connection_file:
            client.connection_file = self.connection_file


ReadyFuture = concurrent.futures.Future[Any] | asyncio.Future[Any]


def _ready_future(manager: _jc.KernelManager) -> ReadyFuture:
    """A fresh ``ready`` future for a start, as jupyter_client makes one."""
    if manager._ready is None or manager._ready.done():
        manager._ready = None
    return manager.ready


def _settle(future: ReadyFuture, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class KernelManager(_KernelwireManager, _jc.KernelManager):
    """jupyter_client's ``KernelManager`` with kernelwire doing the work.

    ``start_kernel(extra_arguments=, env=, cwd=, kernel_id=)``, ``client()`` (a
    kernelwire :class:`~kernelwire.BlockingKernelClient`, usable across restarts),
    ``is_alive()``, ``interrupt_kernel()``, ``signal_kernel()``,
    ``restart_kernel(now=, newports=)``, ``shutdown_kernel(now=)``,
    ``request_shutdown()``/``finish_shutdown()``, ``cleanup_resources()``.
    Kernels get CurveZMQ only as ``transport_encryption`` says (off by default, as in
    jupyter_client), so their connection files stay usable by every Jupyter tool.
    """

    def client(self, **kwargs: Any) -> BlockingKernelClient:  # type: ignore[override]
        """A kernelwire :class:`~kernelwire.BlockingKernelClient` for this kernel (not
        started: call ``start_channels()``). Made before the kernel starts, it connects
        to it when its channels start. A ``client_factory``/``client_class`` set on the
        manager is used instead, as jupyter_client does."""
        if self._configured_client_factory() is not None:
            return super().client(**kwargs)  # type: ignore[return-value]
        client = BlockingKernelClient(**self._client_options(kwargs))
        self._made(client)
        return client

    def start_kernel(self, **kw: Any) -> None:
        """Start the kernel and wait until it answers."""
        future = _ready_future(self)
        self._attempted_start = True
        try:
            self._start(**kw)
        except BaseException as exc:
            _settle(future, exc)
            raise
        _settle(future)

    def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        """Ask the kernel to shut down (``now``: terminate it), escalating to SIGKILL."""
        self._shutdown(now, restart)

    def restart_kernel(self, now: bool = False, newports: bool = False, **kw: Any) -> None:
        """Restart on the same connection info (clients keep working); with ``kw`` or
        ``newports``, start a new process with those options."""
        future = _ready_future(self)
        try:
            self._restart(now, newports, **kw)
        except BaseException as exc:
            _settle(future, exc)
            raise
        _settle(future)

    def interrupt_kernel(self) -> None:
        """Interrupt the running code (signal or message, as the spec says)."""
        self._interrupt()

    def signal_kernel(self, signum: int) -> None:
        """Send ``signum`` to the kernel's process group."""
        self._signal(signum)

    def request_shutdown(self, restart: bool = False) -> None:
        """Send ``shutdown_request`` (see :meth:`finish_shutdown`)."""
        self._request_shutdown(restart)

    def finish_shutdown(
        self, waittime: float | None = None, pollinterval: float = 0.1, restart: bool = False
    ) -> None:
        """Wait up to ``waittime`` for the kernel to exit, then stop it."""
        self._finish_shutdown(waittime, restart)

    def is_alive(self) -> bool:
        """Whether the kernel process is running."""
        return self._is_alive()

    def cleanup_resources(self, restart: bool = False) -> None:
        """Release what the manager holds (the kernel's files went with it)."""
        self._cleanup_resources(restart)


class AsyncKernelManager(_KernelwireManager, _jc.AsyncKernelManager):
    """jupyter_client's ``AsyncKernelManager`` with kernelwire doing the work.

    The same methods as :class:`KernelManager`, as coroutines (process work runs in a
    worker thread, so the loop keeps turning); ``client()`` gives a kernelwire
    :class:`~kernelwire.AsyncKernelClient`.
    """

    def client(self, **kwargs: Any) -> AsyncKernelClient:  # type: ignore[override]
        """A kernelwire :class:`~kernelwire.AsyncKernelClient` for this kernel (or the
        configured ``client_factory``'s)."""
        if self._configured_client_factory() is not None:
            return super().client(**kwargs)  # type: ignore[return-value]
        client = AsyncKernelClient(**self._client_options(kwargs))
        self._made(client)
        return client

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        """Start the kernel and wait until it answers."""
        future = _ready_future(self)
        self._attempted_start = True
        try:
            await in_thread(self._start, **kw)
        except BaseException as exc:
            _settle(future, exc)
            raise
        _settle(future)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
        """Ask the kernel to shut down (``now``: terminate it), escalating to SIGKILL."""
        await in_thread(self._shutdown, now, restart)

    async def restart_kernel(self, now: bool = False, newports: bool = False, **kw: Any) -> None:  # type: ignore[override]
        """Restart on the same connection info (clients keep working)."""
        future = _ready_future(self)
        try:
            await in_thread(self._restart, now, newports, **kw)
        except BaseException as exc:
            _settle(future, exc)
            raise
        _settle(future)

    async def interrupt_kernel(self) -> None:  # type: ignore[override]
        """Interrupt the running code."""
        await in_thread(self._interrupt)

    async def signal_kernel(self, signum: int) -> None:  # type: ignore[override]
        """Send ``signum`` to the kernel's process group."""
        self._signal(signum)

    async def request_shutdown(self, restart: bool = False) -> None:  # type: ignore[override]
        """Send ``shutdown_request``."""
        await in_thread(self._request_shutdown, restart)

    async def finish_shutdown(  # type: ignore[override]
        self, waittime: float | None = None, pollinterval: float = 0.1, restart: bool = False
    ) -> None:
        """Wait up to ``waittime`` for the kernel to exit, then stop it."""
        await in_thread(self._finish_shutdown, waittime, restart)

    async def is_alive(self) -> bool:  # type: ignore[override]
        """Whether the kernel process is running."""
        return self._is_alive()

    async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
        """Release what the manager holds."""
        self._cleanup_resources(restart)


def start_new_kernel(
    startup_timeout: float = 60, kernel_name: str = "python", **kwargs: Any
) -> tuple[KernelManager, BlockingKernelClient]:
    """Start a kernel and a ready client for it: ``(km, kc)``."""
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(**kwargs)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=startup_timeout)
    except BaseException:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return km, kc


async def start_new_async_kernel(
    startup_timeout: float = 60, kernel_name: str = "python", **kwargs: Any
) -> tuple[AsyncKernelManager, AsyncKernelClient]:
    """Start a kernel and a ready asyncio client for it: ``(km, kc)``."""
    km = AsyncKernelManager(kernel_name=kernel_name)
    await km.start_kernel(**kwargs)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=startup_timeout)
    except BaseException:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        raise
    return km, kc


@contextlib.contextmanager
def run_kernel(**kwargs: Any) -> Iterator[BlockingKernelClient]:
    """A context with a ready client of a new kernel; the kernel stops on exit."""
    km, kc = start_new_kernel(**kwargs)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@contextlib.asynccontextmanager
async def run_kernel_async(**kwargs: Any) -> AsyncIterator[AsyncKernelClient]:
    """:func:`run_kernel` for asyncio code."""
    km, kc = await start_new_async_kernel(**kwargs)
    try:
        yield kc
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


__all__ = [
    "AsyncKernelManager",
    "KernelManager",
    "run_kernel",
    "run_kernel_async",
    "start_new_async_kernel",
    "start_new_kernel",
]
