"""kernelwire: talk to Jupyter kernels.

>>> from kernelwire import BlockingKernelClient, run_kernel_in_process   # doctest: +SKIP
>>> with run_kernel_in_process("/tmp/k.json") as kernel:                  # doctest: +SKIP
...     with BlockingKernelClient("/tmp/k.json") as client:
...         reply = client.execute("6 * 7", reply=True)
"""

from .client import (
    AsyncKernelClient,
    AsyncPendingRequest,
    BlockingKernelClient,
    CallbackKernelClient,
    PendingRequest,
)
from .connect import find_connection_file, write_connection_file
from .connection_file import load_connection_file
from .errors import (
    AuthenticationError,
    CellExecutionError,
    CellKernelDied,
    ClientClosed,
    ConnectionFileError,
    ConnectionFileNotFound,
    ExecutionError,
    ExecutorError,
    InvalidSignature,
    JupyterClientMissing,
    KernelDied,
    KernelEnvError,
    KernelLaunchError,
    KernelRestarted,
    KernelSpecError,
    KernelStartTimeout,
    KernelTimeout,
    KernelwireError,
    NoParameterTranslator,
    NoSuchKernel,
    NotebookEditError,
    NotebookError,
    ParameterError,
    PortInUse,
    ProtocolError,
    ReplayedMessage,
    ReplyLost,
    ServerConnectionError,
    ServerError,
    ServerLost,
)
from .execution import ExecutionResult
from .kernel_process import KernelProcess, run_kernel_in_process
from .lifecycle import (
    AsyncKernel,
    AsyncKernelSet,
    ForkServer,
    Kernel,
    KernelEvent,
    KernelPool,
    KernelSet,
    KernelSpec,
    get_kernel_spec,
    list_kernel_specs,
    start_kernel,
    start_kernel_async,
)
from .oneshot import get_messages
from .outputs import OutputNode
from .protocol import Message, Request, requests
from .protocol.connection import ConnectionInfo
from .session import Session

__version__ = "0.1.0"

# Names imported on first use, so that ``import kernelwire`` stays cheap: jupyter_client's
# manager-level names (they subclass jupyter_client's classes, and kernelwire works
# without it), and the remote client (httpx, websockets).
_LAZY_NAMES = {
    "JupyterServer": "remote",
    "RemoteKernel": "remote",
    "connect_server": "remote",
    "KernelManager": "manager",
    "AsyncKernelManager": "manager",
    "start_new_kernel": "manager",
    "start_new_async_kernel": "manager",
    "run_kernel": "manager",
    "MultiKernelManager": "multikernelmanager",
    "AsyncMultiKernelManager": "multikernelmanager",
    "KernelSpecManager": "kernelspec",
    "find_kernel_specs": "kernelspec",
    "tunnel_to_kernel": "connect",
}
_SUBMODULES = {
    "notebook",  # nbformat and its schema validator: seconds
    "remote",
    "manager",
    "multikernelmanager",
    "kernelspec",
    "connect",
    "session",
    "blocking",
    "asynchronous",
}


def __getattr__(name: str) -> object:
    """The names and modules of :data:`_LAZY_NAMES` and :data:`_SUBMODULES`, imported
    when first used."""
    import importlib

    if name in _LAZY_NAMES:
        module = importlib.import_module(f".{_LAZY_NAMES[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kernelwire' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 (the manager names, imported lazily, come first)
    "AsyncKernelManager",
    "AsyncMultiKernelManager",
    "KernelManager",
    "KernelSpecManager",
    "MultiKernelManager",
    "find_kernel_specs",
    "run_kernel",
    "start_new_async_kernel",
    "start_new_kernel",
    "tunnel_to_kernel",
    "AsyncKernel",
    "AsyncKernelClient",
    "AsyncKernelSet",
    "AsyncPendingRequest",
    "AuthenticationError",
    "BlockingKernelClient",
    "CallbackKernelClient",
    "CellExecutionError",
    "CellKernelDied",
    "ClientClosed",
    "ConnectionFileError",
    "ConnectionFileNotFound",
    "ConnectionInfo",
    "ExecutionError",
    "ExecutionResult",
    "ForkServer",
    "InvalidSignature",
    "ExecutorError",
    "JupyterClientMissing",
    "JupyterServer",
    "Kernel",
    "KernelDied",
    "KernelEvent",
    "KernelLaunchError",
    "KernelPool",
    "KernelProcess",
    "KernelRestarted",
    "KernelSet",
    "KernelSpec",
    "KernelSpecError",
    "KernelStartTimeout",
    "KernelTimeout",
    "KernelwireError",
    "Message",
    "NoParameterTranslator",
    "NoSuchKernel",
    "NotebookEditError",
    "NotebookError",
    "OutputNode",
    "ParameterError",
    "PendingRequest",
    "PortInUse",
    "ProtocolError",
    "RemoteKernel",
    "ReplayedMessage",
    "ReplyLost",
    "Request",
    "ServerConnectionError",
    "ServerError",
    "ServerLost",
    "KernelEnvError",
    "Session",
    "connect_server",
    "find_connection_file",
    "get_kernel_spec",
    "get_messages",
    "list_kernel_specs",
    "load_connection_file",
    "notebook",
    "requests",
    "run_kernel_in_process",
    "start_kernel",
    "start_kernel_async",
    "write_connection_file",
]
