"""Clients and the routing engine under them."""

from .blocking import BlockingChannel, BlockingKernelClient, PendingRequest
from .routing import RequestState, Router

__all__ = ["BlockingChannel", "BlockingKernelClient", "PendingRequest", "RequestState", "Router"]
