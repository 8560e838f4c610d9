"""``kernelwire.multikernelmanager``: jupyter_client's multi-kernel managers on kernelwire.

Subclasses of jupyter_client's ``MultiKernelManager`` and ``AsyncMultiKernelManager``
(jupyter_server's kernel manager is one of those) whose kernels are
:class:`kernelwire.manager.KernelManager` / :class:`~kernelwire.manager.AsyncKernelManager`
and whose specs come from :class:`kernelwire.kernelspec.KernelSpecManager`. Needs
jupyter_client (``kernelwire[jupyter]``).
"""

from __future__ import annotations

from .compat import require_jupyter_client

require_jupyter_client("kernelwire.multikernelmanager")

from jupyter_client import multikernelmanager as _jc  # noqa: E402
from traitlets import DottedObjectName, default  # noqa: E402

from .kernelspec import KernelSpecManager  # noqa: E402


class MultiKernelManager(_jc.MultiKernelManager):
    """Several kernels by id (``start_kernel`` returns the id), each run by a
    :class:`kernelwire.manager.KernelManager`."""

    kernel_manager_class = DottedObjectName(
        "kernelwire.manager.KernelManager",
        help="The kernel manager class (kernelwire's by default).",
    ).tag(config=True)

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return KernelSpecManager(parent=self)


class AsyncMultiKernelManager(_jc.AsyncMultiKernelManager):
    """:class:`MultiKernelManager` for asyncio code, with
    :class:`kernelwire.manager.AsyncKernelManager` kernels."""

    kernel_manager_class = DottedObjectName(
        "kernelwire.manager.AsyncKernelManager",
        help="The kernel manager class (kernelwire's by default).",
    ).tag(config=True)

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return KernelSpecManager(parent=self)


__all__ = ["AsyncMultiKernelManager", "MultiKernelManager"]
