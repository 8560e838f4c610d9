"""``kernelwire.blocking``: the module path of jupyter_client's ``BlockingKernelClient``."""

from .client.blocking import BlockingKernelClient

__all__ = ["BlockingKernelClient"]
