"""kernelwire: talk to Jupyter kernels.

>>> from kernelwire import BlockingKernelClient, run_kernel_in_process   # doctest: +SKIP
>>> with run_kernel_in_process("/tmp/k.json") as kernel:                  # doctest: +SKIP
...     with BlockingKernelClient("/tmp/k.json") as client:
...         reply = client.execute("6 * 7", reply=True)
"""

from . import notebook
from .client import (
    AsyncKernelClient,
    AsyncPendingRequest,
    BlockingKernelClient,
    CallbackKernelClient,
    PendingRequest,
)
from .errors import (
    ClientClosed,
    ConnectionFileError,
    ExecutionError,
    InvalidSignature,
    KernelDied,
    KernelLaunchError,
    KernelRestarted,
    KernelTimeout,
    KernelwireError,
    NoSuchKernel,
    PortInUse,
    ProtocolError,
    ReplayedMessage,
    ReplyLost,
)
from .execution import ExecutionResult
from .kernel_process import KernelProcess, run_kernel_in_process
from .lifecycle import (
    AsyncKernel,
    AsyncKernelSet,
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
from .protocol import Message, Request, Session, requests
from .protocol.connection import (
    ConnectionInfo,
    find_connection_file,
    load_connection_file,
    write_connection_file,
)
from .remote import (
    AuthenticationError,
    JupyterServer,
    RemoteKernel,
    ServerConnectionError,
    ServerError,
    connect_server,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncKernel",
    "AsyncKernelClient",
    "AsyncKernelSet",
    "AsyncPendingRequest",
    "AuthenticationError",
    "BlockingKernelClient",
    "CallbackKernelClient",
    "ClientClosed",
    "ConnectionFileError",
    "ConnectionInfo",
    "ExecutionError",
    "ExecutionResult",
    "InvalidSignature",
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
    "KernelTimeout",
    "KernelwireError",
    "Message",
    "NoSuchKernel",
    "PendingRequest",
    "PortInUse",
    "ProtocolError",
    "RemoteKernel",
    "ReplayedMessage",
    "ReplyLost",
    "Request",
    "ServerConnectionError",
    "ServerError",
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
