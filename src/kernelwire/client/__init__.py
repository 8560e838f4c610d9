"""Clients and the routing engine under them."""

from .async_client import AsyncChannel, AsyncKernelClient, AsyncPendingRequest
from .blocking import BlockingChannel, BlockingKernelClient, PendingRequest
from .callback import CallbackKernelClient
from .routing import RequestState, Router

__all__ = [
    "AsyncChannel",
    "AsyncKernelClient",
    "AsyncPendingRequest",
    "BlockingChannel",
    "BlockingKernelClient",
    "CallbackKernelClient",
    "PendingRequest",
    "RequestState",
    "Router",
]
