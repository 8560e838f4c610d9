"""Transports: they move frames between kernelwire and a kernel, and interpret nothing."""

from .zmq import ZmqTransport

__all__ = ["ZmqTransport"]
