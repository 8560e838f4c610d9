"""The type of the outputs kernelwire collects: dicts whose keys read as attributes too.

nbformat's ``NotebookNode`` does the same, but importing nbformat loads its schema
validator (jsonschema, and with it a grammar built at import time): seconds on a loaded
machine, paid by every ``kernelwire run`` that touches no notebook. An :class:`OutputNode`
is a ``dict``: JSON, nbformat's writer and validator, ``==`` and pickling take it as one.

>>> out = node_from({"output_type": "stream", "name": "stdout", "text": "hi"})
>>> out.text, out["name"]
('hi', 'stdout')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class OutputNode(dict[str, Any]):
    """A dict whose keys are also attributes (``output.data`` is ``output["data"]``);
    a mapping stored in it becomes an :class:`OutputNode` too."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"output has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"output has no field {name!r}") from None

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, Mapping) and not isinstance(value, OutputNode):
            value = node_from(value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, through :meth:`__setitem__`."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def node_from(value: Any) -> Any:
    """``value`` with every mapping in it (in lists too) turned into an :class:`OutputNode`."""
    if isinstance(value, Mapping):
        return OutputNode({key: node_from(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return [node_from(item) for item in value]
    return value


NodeFrom = Callable[[Any], Any]
"""Makes the node type of a collector's outputs from a dict, recursively (like
:func:`node_from`; nbformat's ``from_dict`` for nbformat's ``NotebookNode``)."""

__all__ = ["NodeFrom", "OutputNode", "node_from"]
