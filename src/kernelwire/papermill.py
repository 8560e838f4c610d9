"""A papermill engine that runs notebooks on kernelwire's kernel manager.

Registered as the ``kernelwire`` engine through papermill's ``papermill.engine`` entry
point, so ``papermill in.ipynb out.ipynb -p alpha 0.5 --engine kernelwire`` works once
kernelwire is installed. It is papermill's own nbclient engine with
:class:`kernelwire.manager.AsyncKernelManager` in nbclient's ``kernel_manager_class``
seat: parameters, progress, logging and the outputs papermill writes are papermill's.

>>> import papermill                                                      # doctest: +SKIP
>>> papermill.execute_notebook("in.ipynb", "out.ipynb", parameters={"alpha": 0.5},
...                            engine_name="kernelwire")                   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine

from .manager import AsyncKernelManager


class KernelwireEngine(NBClientEngine):  # type: ignore[misc]
    """papermill's nbclient engine, with kernelwire's kernel manager."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        """Execute as papermill's nbclient engine does, on kernelwire's manager (a
        ``kernel_manager_class`` given by the caller wins)."""
        kwargs.setdefault("kernel_manager_class", AsyncKernelManager)
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


__all__ = ["KernelwireEngine"]
