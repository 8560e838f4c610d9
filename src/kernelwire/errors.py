"""The exceptions kernelwire raises, all here, all under :class:`KernelwireError`.

Each also derives from the builtin a caller of ``jupyter_client`` would catch
(``ValueError``, ``TimeoutError``, ``RuntimeError``), so ported code keeps working::

    KernelwireError
    ├── ConnectionFileError (ValueError)       a connection file or info is invalid
    │   └── ConnectionFileNotFound (FileNotFoundError)  no such file
    ├── ProtocolError (ValueError)             bytes that are not a valid message
    │   ├── InvalidSignature                   its HMAC does not match
    │   ├── ReplayedMessage                    its signature was seen before
    │   └── ReplyLost                          a reply that will not come
    ├── KernelTimeout (TimeoutError)           no answer in time
    │   └── KernelStartTimeout                 ... from a kernel starting up
    ├── KernelDied (RuntimeError)              the kernel exited or stopped answering
    │   ├── KernelRestarted                    ... restarted while a request waited
    │   └── CellKernelDied                     ... while a notebook's cell ran
    ├── KernelLaunchError (OSError)            the kernel's command could not run
    ├── PortInUse (OSError)                    a connection file's port is taken
    ├── KernelSpecError (ValueError)           a kernel.json that is not a valid spec
    ├── NoSuchKernel (KeyError)                no kernel spec by that name
    ├── ExecutionError                         code run on the kernel raised
    │   └── CellExecutionError                 ... in a notebook's cell
    ├── NotebookError (ValueError)             a notebook that cannot be read
    ├── NotebookEditError (ValueError)         a notebook edit that cannot be done
    ├── ParameterError (ValueError)            notebook parameters that cannot be used
    │   └── NoParameterTranslator              ... in the kernel's language
    ├── ClientClosed (RuntimeError)            the client's channels are not running
    ├── JupyterClientMissing (ImportError)     the manager layer without jupyter_client
    ├── ExecutorError                          an executor could not run a notebook's task
    └── ServerError                            a Jupyter Server answered with an error
        ├── AuthenticationError                it refused the token
        └── ServerConnectionError (ConnectionError)  it could not be reached
            └── ServerLost                     ... mid-batch, and its notebook could not move

The modules that raise them import them from here (their old homes, e.g.
``kernelwire.remote.ServerError``, still name the same classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any


class KernelwireError(Exception):
    """Base class of every error raised by kernelwire.

    Each pickles with its message and attributes (a notebook's error comes back from a
    worker process so), whatever its ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(
    cls: type[KernelwireError], args: tuple[Any, ...], state: dict[str, Any]
) -> KernelwireError:
    """An unpickled error: its class, message and attributes, without calling ``__init__``."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConnectionFileError(KernelwireError, ValueError):
    """A connection file (or connection info) is missing, unreadable or invalid.

    ``path`` names the file (``None`` for in-memory info) and ``field`` the offending
    key (``None`` when the file as a whole is at fault).
    """

    def __init__(
        self, message: str, *, path: str | PathLike[str] | None = None, field: str | None = None
    ) -> None:
        self.path = None if path is None else str(path)
        self.field = field
        where = self.path if self.path is not None else "connection info"
        if field is not None:
            where = f"{where}, field {field!r}"
        super().__init__(f"{where}: {message}")


class ConnectionFileNotFound(ConnectionFileError, FileNotFoundError):
    """No connection file at the path, or none matching the name looked for.

    Also a ``FileNotFoundError`` (an ``OSError``), as jupyter_client raises there.
    """


class ProtocolError(KernelwireError, ValueError):
    """Bytes on the wire that are not a valid Jupyter message."""


class InvalidSignature(ProtocolError):
    """A message whose HMAC signature does not match its frames."""


class ReplayedMessage(ProtocolError):
    """A message whose signature was already seen: a replay."""


class ReplyLost(ProtocolError):
    """The reply to a request will not come, and waiting longer would only hang.

    The kernel went idle without sending it (ipykernel drops replies in interrupt
    storms), or the connection it travelled on was dropped (ZeroMQ refuses a message
    over the size bound by dropping its sender's connection). ``msg_id`` and
    ``msg_type`` name the request.
    """

    def __init__(self, message: str, *, msg_id: str = "", msg_type: str = "") -> None:
        self.msg_id = msg_id
        self.msg_type = msg_type
        super().__init__(message)


class KernelTimeout(KernelwireError, TimeoutError):
    """The kernel did not answer within the time allowed."""


class KernelStartTimeout(KernelTimeout):
    """A starting kernel did not answer within its start-up time (``startup_timeout``);
    the message's first line says so, the lines after it are the kernel's stderr."""


class KernelDied(KernelwireError, RuntimeError):
    """The kernel process exited or stopped answering its heartbeat.

    ``exit_code`` is the process's exit status when known; ``stderr`` the last lines
    it wrote to standard error when they were captured.
    """

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = "") -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        text = message
        if exit_code is not None:
            text += f" (exit code {exit_code})"
        if stderr.strip():
            text += "\n--- kernel stderr (last lines) ---\n" + stderr.rstrip()
        super().__init__(text)


class KernelRestarted(KernelDied):
    """The kernel was restarted while a request waited for it: the answer will not come.

    Waits on requests sent before :meth:`Kernel.restart() <kernelwire.Kernel.restart>`,
    :meth:`RemoteKernel.restart() <kernelwire.RemoteKernel.restart>` or a server's own
    restart raise it at once; requests sent afterwards go to the new kernel.
    """


class KernelLaunchError(KernelwireError, OSError):
    """The kernel's command could not be run (its program is missing or not executable)."""


class PortInUse(KernelwireError, OSError):
    """A port named in a connection file is already bound by another process.

    ``hint`` says what that likely means (by default: a kernel already runs there).
    """

    def __init__(
        self,
        path: str,
        field: str,
        port: int | str,
        *,
        hint: str = "is a kernel already running on this connection file?",
    ) -> None:
        self.path = path
        self.field = field
        self.port = port
        super().__init__(f"{path}, field {field!r}: port {port} is already in use ({hint})")


class ExecutionError(KernelwireError):
    """Code run on the kernel raised: carries the kernel's ``ename``, ``evalue``, ``traceback``."""

    def __init__(self, ename: str, evalue: str, traceback: Sequence[str] = ()) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = list(traceback)
        super().__init__(f"{ename}: {evalue}")


def cell_label(cell_index: int, execution_count: int | None = None) -> str:
    """How messages name a cell: by the ``In [n]`` its traceback shows when it has one,
    and by its 0-based index in ``nb.cells`` (``cell In [2] (index 1)``)."""
    if execution_count is None:
        return f"cell index {cell_index}"
    return f"cell In [{execution_count}] (index {cell_index})"


class CellExecutionError(ExecutionError):
    """A cell raised: carries the cell's index (0-based, in ``nb.cells``), its execution
    count if it has one, and the kernel's ename, evalue, traceback."""

    def __init__(
        self,
        cell_index: int,
        ename: str,
        evalue: str,
        traceback: Sequence[str] = (),
        execution_count: int | None = None,
    ) -> None:
        super().__init__(ename, evalue, traceback)
        self.cell_index = cell_index
        self.execution_count = execution_count
        self.args = (f"{cell_label(cell_index, execution_count)} raised {ename}: {evalue}",)


class CellKernelDied(KernelDied):
    """The kernel died while a cell ran: names the cell; the notebook keeps what ran."""

    def __init__(
        self, cell_index: int, died: KernelDied, execution_count: int | None = None
    ) -> None:
        # ``died``'s text already holds its exit code and stderr: not added twice.
        label = cell_label(cell_index, execution_count)
        super().__init__(f"{label}: the kernel died while it ran: {died}")
        self.cell_index = cell_index
        self.execution_count = execution_count
        self.exit_code = died.exit_code
        self.stderr = died.stderr


class KernelSpecError(KernelwireError, ValueError):
    """A ``kernel.json`` that cannot be read or is not a valid kernel spec."""


class NotebookError(KernelwireError, ValueError):
    """A notebook that cannot be read or is not a valid notebook; names the file."""


class NotebookEditError(KernelwireError, ValueError):
    """A notebook edit that cannot be done (``kernelwire mcp``'s notebook tools): no such
    file or cell, a bad index or cell type; says which."""


class ParameterError(KernelwireError, ValueError):
    """Notebook parameters that cannot be used: bad YAML or base64, or a value the
    kernel's language cannot be given; says which parameter or option."""


class NoParameterTranslator(ParameterError):
    """The notebook's kernel language has no parameter translator; names the language
    and kernel, and ``supported`` lists the languages that have one."""

    def __init__(self, kernel_name: str, language: str, supported: Sequence[str]) -> None:
        self.kernel_name = kernel_name
        self.language = language
        self.supported = sorted(supported)
        super().__init__(
            f"cannot inject parameters into a {language or 'unknown'}-language notebook "
            f"(kernel {kernel_name!r}): parameters can be written in "
            f"{', '.join(self.supported)} only"
        )


class ClientClosed(KernelwireError, RuntimeError):
    """The client's channels are not started, or were stopped."""


class NoSuchKernel(KernelwireError, KeyError):
    """No kernel spec has the requested name; ``available`` lists the names that exist.

    A ``KeyError`` (so a ``LookupError``), as jupyter_client's ``NoSuchKernel`` is.
    """

    def __init__(self, name: str, available: Sequence[str], where: str = "") -> None:
        self.name = name
        self.available = sorted(available)
        names = ", ".join(self.available) or "none installed"
        place = f" {where}" if where else ""
        super().__init__(f"no kernel named {name!r}{place}; available kernels: {names}")

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


class ServerError(KernelwireError):
    """A Jupyter Server answered with an error; names the server and what was asked.

    ``status`` is the HTTP status when the server answered with one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KernelEnvError(KernelwireError, ValueError):
    """A kernel's start asked for environment variables the server would drop
    (an Enterprise or Kernel Gateway passes only ``KERNEL_``-prefixed ones by default)."""


class AuthenticationError(ServerError):
    """The server refused the token (HTTP 401 or 403)."""


class ServerConnectionError(ServerError, ConnectionError):
    """The server could not be reached (down, wrong address, TLS failure)."""


class ServerLost(ServerConnectionError):
    """A server of ``execute_many(servers=[...])`` stopped answering while a notebook ran
    on it, and the notebook could not be run again elsewhere: it had been moved once
    already, or no other server was left. ``url`` names the server that was lost."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ExecutorError(KernelwireError):
    """An executor (Dask, a process pool, ...) could not run a notebook's task: a worker
    was lost, or the task or its result did not pickle; names the notebook."""


class JupyterClientMissing(KernelwireError, ImportError):
    """The jupyter_client-compatible manager layer was used without jupyter_client."""
