"""``kernelwire.connect``: connection files with jupyter_client's signatures.

:func:`write_connection_file` takes jupyter_client's keywords (``fname``, the five
``*_port`` numbers, ``ip``, ``key`` as bytes, ``transport``, ``signature_scheme``,
``kernel_name``) and returns ``(fname, cfg)`` with ``cfg`` a plain dict, as
jupyter_client's does; :func:`find_connection_file` takes ``path`` as one folder or a
list of them. The files are kernelwire's own (mode 0600, validated when read).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from . import connection_file as connection
from .connection_file import load_connection_file
from .errors import KernelwireError
from .protocol.codec import DEFAULT_SCHEME
from .protocol.connection import PORT_FIELDS, ConnectionInfo

_PathLike = str | os.PathLike[str]


def write_connection_file(
    fname: _PathLike | None = None,
    shell_port: int = 0,
    iopub_port: int = 0,
    stdin_port: int = 0,
    hb_port: int = 0,
    control_port: int = 0,
    ip: str = "",
    key: bytes | str = b"",
    transport: str = "tcp",
    signature_scheme: str = DEFAULT_SCHEME,
    kernel_name: str = "",
    **kwargs: Any,
) -> tuple[str, dict[str, Any]]:
    """Write a connection file; ports left at 0 get free ones. Returns ``(fname, cfg)``.

    An empty ``key`` writes an empty key (unsigned messages), as jupyter_client does;
    ``fname`` defaults to a new ``kernel-<id>.json`` in Jupyter's runtime folder.
    ``curve_publickey``/``curve_secretkey`` may be given as keywords too.

    >>> fname, cfg = write_connection_file(ip="127.0.0.1", key=b"k")   # doctest: +SKIP
    >>> cfg["shell_port"] > 0                                          # doctest: +SKIP
    True
    """
    unknown = set(kwargs) - {"curve_publickey", "curve_secretkey"}
    if unknown:
        raise TypeError(f"write_connection_file() got unexpected keywords: {sorted(unknown)}")
    given = {
        "shell_port": shell_port,
        "iopub_port": iopub_port,
        "stdin_port": stdin_port,
        "hb_port": hb_port,
        "control_port": control_port,
    }
    info = connection.new_connection_info(
        ip=ip or "127.0.0.1",
        transport=transport,  # type: ignore[arg-type]
        key=key.decode() if isinstance(key, bytes) else key,
        signature_scheme=signature_scheme,
        kernel_name=kernel_name,
        ports={name: port for name, port in given.items() if port},
    )
    curve = {
        name: kwargs[name] for name in ("curve_publickey", "curve_secretkey") if name in kwargs
    }
    if curve:
        data = info.to_dict()
        for name, value in curve.items():
            data[name] = value.decode("ascii") if isinstance(value, bytes) else value
        info = ConnectionInfo.from_dict(data)
    path, info = connection.write_connection_file(fname, info)
    return path, info.to_dict()


def find_connection_file(
    filename: str = "kernel-*.json",
    path: _PathLike | Iterable[_PathLike] | None = None,
    profile: str | None = None,
) -> str:
    """Find a connection file by path, name or glob (the newest match wins).

    ``path`` is one folder or a list of folders (default: the current folder and
    Jupyter's runtime folder). ``profile`` (an IPython profile, long unused by
    jupyter_client) must be ``None``.
    """
    if profile is not None:
        raise KernelwireError(
            "find_connection_file: IPython profiles are not supported (profile="
            f"{profile!r}); pass the folder as path= instead"
        )
    paths: list[_PathLike] | None
    if path is None:
        paths = None
    elif isinstance(path, (str, os.PathLike)):
        paths = [path]
    else:
        paths = list(path)
    return connection.find_connection_file(filename, paths)


def tunnel_to_kernel(
    connection_info: _PathLike | dict[str, Any],
    sshserver: str,
    sshkey: str | None = None,
) -> tuple[int, int, int, int, int]:
    """Forward the kernel's five ports over SSH; needs jupyter_client's ``ssh`` support.

    jupyter_client does this with its ``ssh`` module (paramiko or pexpect); kernelwire has
    no tunnel of its own and uses that module when it is installed. Returns the local
    ports ``(shell, iopub, stdin, hb, control)``.
    """
    try:
        from jupyter_client.connect import tunnel_to_kernel as tunnel
    except ImportError:
        raise KernelwireError(
            "tunnel_to_kernel needs jupyter_client's ssh tunnelling: "
            "pip install 'kernelwire[jupyter]' (jupyter_client), and paramiko or pexpect"
        ) from None
    info = connection_info
    if not isinstance(info, dict):
        info = load_connection_file(info).to_dict()
    ports: tuple[int, int, int, int, int] = tunnel(info, sshserver, sshkey)  # type: ignore[arg-type]
    return ports


def get_connection_info(
    connection_file: _PathLike | None = None, unpack: bool = False
) -> str | dict[str, Any]:
    """The contents of a connection file (default: the newest in the runtime folder),
    as JSON text, or as a dict with ``key`` as bytes when ``unpack``."""
    path = find_connection_file(os.fspath(connection_file or "kernel-*.json"))
    info = load_connection_file(path).to_dict()
    if not unpack:
        import json

        return json.dumps(info, indent=2)
    info["key"] = info["key"].encode()
    return info


__all__ = [
    "PORT_FIELDS",
    "find_connection_file",
    "get_connection_info",
    "tunnel_to_kernel",
    "write_connection_file",
]
