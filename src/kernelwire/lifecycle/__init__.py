"""Kernel lifecycle: specs, launching, interrupt, restart, shutdown, death, sets and pools."""

from ..errors import KernelSpecError
from .aio import AsyncKernel, start_kernel_async
from .forkserver import ForkServer
from .kernel import Kernel, KernelEvent, start_kernel
from .kernelset import AsyncKernelSet, KernelSet
from .pool import KernelPool
from .specs import KernelSpec, get_kernel_spec, list_kernel_specs

__all__ = [
    "AsyncKernel",
    "AsyncKernelSet",
    "ForkServer",
    "Kernel",
    "KernelEvent",
    "KernelPool",
    "KernelSet",
    "KernelSpec",
    "KernelSpecError",
    "get_kernel_spec",
    "list_kernel_specs",
    "start_kernel",
    "start_kernel_async",
]
