"""Kernel specs: find installed kernels and read their ``kernel.json``.

Specs are looked up in Jupyter's data paths (``jupyter_core``: user, environment,
system) plus the running environment's ``share/jupyter/kernels``; the first folder
that has a name wins, as in Jupyter.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import KernelSpecError, NoSuchKernel

InterruptMode = Literal["signal", "message"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
"""A ``{name}`` in a spec's argv: only plain names (no attribute or index lookups, no
format specs), so that JSON literals and lone braces in an argument pass through as
written, as jupyter_client launches them."""


def substitute(arg: str, names: Mapping[str, str]) -> str:
    """``arg`` with each ``{name}`` that ``names`` knows replaced; anything else as written.

    >>> substitute('{prefix}/x {"a": 1} {other} {', {"prefix": "/env"})
    '/env/x {"a": 1} {other} {'
    """
    if "{" not in arg:
        return arg
    return _PLACEHOLDER.sub(lambda match: names.get(match.group(1), match.group(0)), arg)


@dataclass(frozen=True)
class KernelSpec:
    """One installed kernel: how to start it and what it is."""

    name: str
    argv: tuple[str, ...]
    display_name: str
    language: str
    resource_dir: str
    interrupt_mode: InterruptMode = "signal"
    env: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, name: str, resource_dir: str | os.PathLike[str]) -> KernelSpec:
        """Read ``resource_dir/kernel.json``; :class:`KernelSpecError` says what is wrong."""
        path = Path(resource_dir) / "kernel.json"
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise KernelSpecError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        except orjson.JSONDecodeError as exc:
            raise KernelSpecError(f"{path}: is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise KernelSpecError(f"{path}: must be a JSON object")
        argv = data.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise KernelSpecError(f"{path}, field 'argv': must be a non-empty list of strings")
        mode = data.get("interrupt_mode", "signal")
        if mode not in ("signal", "message"):
            raise KernelSpecError(f"{path}, field 'interrupt_mode': must be 'signal' or 'message'")
        env = data.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise KernelSpecError(f"{path}, field 'env': must be an object of strings")
        return cls(
            name=name,
            argv=tuple(argv),
            display_name=str(data.get("display_name", name)),
            language=str(data.get("language", "")),
            resource_dir=str(Path(resource_dir)),
            interrupt_mode=mode,
            env=dict(env),
            metadata=dict(data.get("metadata") or {}),
        )

    def command(
        self,
        connection_file: str,
        extra_arguments: Sequence[str] = (),
        **names: str,
    ) -> list[str]:
        """The argv to launch: the spec's, then ``extra_arguments``, templated.

        ``{connection_file}`` (its real path), ``{prefix}`` (``sys.prefix``),
        ``{resource_dir}`` and any of ``names`` (e.g. ``kernel_id``, ``cwd``) are
        replaced, as jupyter_client replaces them; any other text in braces is left as
        written. A spec naming plain ``python``/``python3`` runs the current interpreter,
        as the spec installed by ipykernel means "the Python this kernel was installed for".
        """
        values = {
            "connection_file": os.path.realpath(connection_file),
            "prefix": sys.prefix,
            "resource_dir": self.resource_dir,
            **names,
        }
        argv = [substitute(arg, values) for arg in (*self.argv, *extra_arguments)]
        if argv[0] in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
            argv[0] = sys.executable
        return argv

    @property
    def is_ipykernel(self) -> bool:
        """Whether the spec runs ipykernel (its argv names the ``ipykernel`` module)."""
        return any("ipykernel" in arg for arg in self.argv)

    @property
    def supports_curve(self) -> bool:
        """Whether the spec says the kernel accepts CurveZMQ keys."""
        return "curve" in (self.metadata.get("supported_encryption") or [])

    def to_dict(self) -> dict[str, Any]:
        """The spec as ``kernel.json`` fields (plus ``name`` and ``resource_dir``)."""
        return {
            "name": self.name,
            "argv": list(self.argv),
            "display_name": self.display_name,
            "language": self.language,
            "interrupt_mode": self.interrupt_mode,
            "env": dict(self.env),
            "metadata": dict(self.metadata),
            "resource_dir": self.resource_dir,
        }


def kernel_dirs() -> list[str]:
    """Folders searched for kernel specs, in priority order."""
    from jupyter_core.paths import jupyter_path

    dirs = list(jupyter_path("kernels"))
    own = os.path.join(sys.prefix, "share", "jupyter", "kernels")
    if own not in dirs:
        dirs.append(own)
    return dirs


def find_kernel_spec_dirs() -> dict[str, str]:
    """Map each installed kernel name to its folder (first folder wins)."""
    found: dict[str, str] = {}
    for folder in kernel_dirs():
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            name = entry.name.lower()
            if name not in found and os.path.isfile(os.path.join(entry.path, "kernel.json")):
                found[name] = entry.path
    return found


def list_kernel_specs() -> dict[str, KernelSpec]:
    """Every installed kernel spec that can be read, by name.

    >>> "python3" in list_kernel_specs()   # doctest: +SKIP
    True
    """
    specs: dict[str, KernelSpec] = {}
    for name, folder in find_kernel_spec_dirs().items():
        try:
            specs[name] = KernelSpec.from_dir(name, folder)
        except KernelSpecError:
            continue  # a broken spec elsewhere must not hide the good ones
    return specs


def get_kernel_spec(name: str) -> KernelSpec:
    """The spec called ``name``; :class:`NoSuchKernel` lists the names that exist."""
    folders = find_kernel_spec_dirs()
    folder = folders.get(name.lower())
    if folder is None:
        raise NoSuchKernel(name, list(folders))
    return KernelSpec.from_dir(name.lower(), folder)
