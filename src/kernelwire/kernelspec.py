"""``kernelwire.kernelspec``: jupyter_client's kernel-spec names on kernelwire's discovery.

:class:`KernelSpecManager` is a subclass of jupyter_client's (a kernel manager's
``kernel_spec_manager`` trait requires one) whose lookups are kernelwire's: the same
folders, the same first-folder-wins rule, and ``kernel.json`` validated with errors
that name the file and the field. Needs jupyter_client (``kernelwire[jupyter]``).
"""

from __future__ import annotations

from .compat import require_jupyter_client

require_jupyter_client("kernelwire.kernelspec")

from jupyter_client import kernelspec as _jc  # noqa: E402

from . import errors  # noqa: E402
from .lifecycle import specs  # noqa: E402

KernelSpec = _jc.KernelSpec
NATIVE_KERNEL_NAME: str = _jc.NATIVE_KERNEL_NAME


class NoSuchKernel(errors.NoSuchKernel, _jc.NoSuchKernel):
    """No kernel spec has the requested name: kernelwire's error, and jupyter_client's
    (``except jupyter_client.kernelspec.NoSuchKernel`` catches it too)."""

    def __init__(self, name: str, available: list[str]) -> None:
        errors.NoSuchKernel.__init__(self, name, available)
        # jupyter_client's __init__ (reached through super()) neither keeps the message
        # nor the name: set both here.
        names = ", ".join(self.available) or "none installed"
        self.args = (f"no kernel named {name!r}; available kernels: {names}",)
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class KernelSpecManager(_jc.KernelSpecManager):
    """jupyter_client's ``KernelSpecManager``, finding and reading specs as kernelwire does."""

    def find_kernel_specs(self) -> dict[str, str]:
        """Map each installed kernel name to its folder."""
        found = specs.find_kernel_spec_dirs()
        allowed = getattr(self, "allowed_kernelspecs", None)
        if allowed:
            found = {name: path for name, path in found.items() if name in allowed}
        return found

    def get_kernel_spec(self, kernel_name: str) -> _jc.KernelSpec:
        """The spec called ``kernel_name`` as jupyter_client's ``KernelSpec``;
        :class:`NoSuchKernel` lists the names that exist."""
        found = self.find_kernel_specs()
        name = kernel_name.lower()
        if name == "python" and name not in found:
            name = NATIVE_KERNEL_NAME
        folder = found.get(name)
        if folder is None:
            raise NoSuchKernel(kernel_name, list(found))
        specs.KernelSpec.from_dir(name, folder)  # validates, naming the file and the field
        return self.kernel_spec_class.from_resource_dir(folder)


def find_kernel_specs() -> dict[str, str]:
    """Map each installed kernel name to its folder."""
    return KernelSpecManager().find_kernel_specs()


def get_kernel_spec(kernel_name: str) -> _jc.KernelSpec:
    """The spec called ``kernel_name`` (jupyter_client's ``KernelSpec``)."""
    return KernelSpecManager().get_kernel_spec(kernel_name)


__all__ = [
    "NATIVE_KERNEL_NAME",
    "KernelSpec",
    "KernelSpecManager",
    "NoSuchKernel",
    "find_kernel_specs",
    "get_kernel_spec",
]
