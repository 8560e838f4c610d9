"""Run a kernel in a child process of this one: for scripts, tests and notebooks.

>>> with run_kernel_in_process("/tmp/kernel.json") as kernel:   # doctest: +SKIP
...     print(kernel.pid, kernel.is_alive())
"""

from __future__ import annotations

import os
import signal
import sys

from .connection_file import load_connection_file, write_connection_file
from .lifecycle.launcher import (
    PORT_RETRIES,
    STARTUP_TIMEOUT,
    KernelProcess,
    child_env,
    file_command,
    launch,
    ports_in_use,
    reserved_connection_info,
)
from .protocol.connection import ConnectionInfo

__all__ = ["KernelProcess", "run_kernel_in_process"]

_LAUNCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_launch.py")
"""The child runs ``_launch.py`` as a file (:func:`file_command`): importing the kernelwire
package there would cost every kernel start for nothing."""


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
    :class:`PortInUse` otherwise), or written with reserved free ports and a fresh key;
    a kernel that loses one of those ports to another process before binding it is
    started again on new ones. Raises :class:`KernelDied` with the kernel's output if it
    exits during start-up, :class:`KernelTimeout` if it does not answer within
    ``startup_timeout`` seconds.
    """
    payload = _kernel_payload(kernel_class)
    path = None if connection_file is None else os.fspath(connection_file)
    if path is not None and os.path.exists(path):
        given = path, load_connection_file(path)
        taken = ports_in_use(*given)
        if taken is not None:
            raise taken

        def connect() -> tuple[str, ConnectionInfo]:
            return given

        retries, owned = 1, False
    else:

        def connect() -> tuple[str, ConnectionInfo]:
            nonlocal path  # a retry rewrites the same file
            path, info = write_connection_file(path, reserved_connection_info())
            return path, info

        retries, owned = PORT_RETRIES, True
    # The child must import what this process imports (a kernel class from a test module).
    paths = [p for p in sys.path if p] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
    env = child_env({"PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in paths if p))})
    name = "ipykernel" if kernel_class is None else kernel_class.__name__
    return launch(
        lambda file: file_command(sys.executable, _LAUNCH_SCRIPT, file),
        connect,
        retries=retries,
        owns_connection_file=owned,
        env=env,
        stdin=payload,
        timeout=startup_timeout,
        what=f"kernel {name}",
        stack_signal=getattr(signal, "SIGUSR1", None),  # _launch.py dumps stacks on it
    )
