"""``kernelwire.asynchronous``: the module path of jupyter_client's ``AsyncKernelClient``."""

from .client.async_client import AsyncKernelClient

__all__ = ["AsyncKernelClient"]
