"""Connection files on disk: reading, writing (owner-only), finding, and fresh connection
info with free ports. The model and its validation are :mod:`kernelwire.protocol.connection`.
"""

from __future__ import annotations

import glob
import os
import random
import secrets
import socket
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .errors import ConnectionFileError, ConnectionFileNotFound
from .protocol import connection as connection_model
from .protocol.codec import DEFAULT_SCHEME
from .protocol.connection import (
    PORT_FIELDS,
    ConnectionInfo,
    Transport,
    load_connection_info,
)

_PathLike = str | os.PathLike[str]

__all__ = [
    "find_connection_file",
    "free_tcp_ports",
    "load_connection_file",
    "new_connection_info",
    "runtime_dir",
    "write_connection_file",
]


def load_connection_file(path: _PathLike) -> ConnectionInfo:
    """Read and validate a connection file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConnectionFileNotFound("no such file", path=path) from None
    except OSError as exc:
        raise ConnectionFileError(f"cannot be read: {exc.strerror or exc}", path=path) from None
    return load_connection_info(raw, path)


EPHEMERAL_PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
"""Where Linux says which ports it gives outgoing connections as their source port."""
LOWEST_CHOSEN_PORT = 20000
"""The lowest port :func:`free_tcp_ports` picks at random (below it sit most services' ports)."""
_PORT_TRIES = 200


def free_tcp_ports(ip: str = "127.0.0.1", count: int = 5) -> list[int]:
    """``count`` distinct ports that were free on ``ip`` a moment ago.

    Where the OS tells its ephemeral range (Linux), the ports are picked at random
    outside it: a client connecting to a port in that range before the kernel has bound
    it can be given that very port as its own source port (TCP connects to itself) and
    take it from the kernel; so can any outgoing connection on the machine. Seen in CI: a
    starting kernel lost its IOPub port to the launcher's own reconnecting IOPub socket.
    Elsewhere (or if no port outside the range is free) the OS picks them. All sockets
    are held open until every port is chosen, so the ports differ. Another process may
    still take one before the kernel binds it.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        candidates = _ports_outside_ephemeral_range()
        tries = _PORT_TRIES if candidates else 0
        chosen = random.Random()
        while len(sockets) < count and tries > 0:
            tries -= 1
            port = chosen.choice(candidates)
            if any(sock.getsockname()[1] == port for sock in sockets):
                continue  # two sockets with SO_REUSEADDR may share a port that none listens on
            sock = socket.socket(family, socket.SOCK_STREAM)
            if os.name == "posix":  # as ZeroMQ binds: old connections in TIME_WAIT do not count
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((ip, port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        while len(sockets) < count:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((ip, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ports_outside_ephemeral_range() -> list[int]:
    """Ports from :data:`LOWEST_CHOSEN_PORT` up that the OS never gives an outgoing
    connection; empty where it does not say which it gives."""
    try:
        low, high = (int(word) for word in Path(EPHEMERAL_PORT_RANGE_FILE).read_text().split())
    except (OSError, ValueError):
        return []
    return [*range(LOWEST_CHOSEN_PORT, low), *range(high + 1, 65536)]


def new_connection_info(
    *,
    ip: str = "127.0.0.1",
    transport: Transport = "tcp",
    key: str | None = None,
    signature_scheme: str = DEFAULT_SCHEME,
    kernel_name: str = "",
    ports: Mapping[str, int] | None = None,
    curve: bool = False,
) -> ConnectionInfo:
    """Fresh connection info: a random key and free ports (or unused ipc names).

    With ``curve``, a fresh CurveZMQ server key pair is added: a kernel that supports
    it encrypts every channel, and clients authenticate it by its public key.
    """
    chosen = dict(ports or {})
    missing = [name for name in PORT_FIELDS if not chosen.get(name)]
    if transport == "tcp":
        chosen.update(zip(missing, free_tcp_ports(ip, len(missing)), strict=True))
    else:
        if ip == "127.0.0.1":
            ip = os.path.join(tempfile.mkdtemp(prefix="kernelwire-ipc-"), "kernel")
        number = 1
        for name in missing:
            while os.path.exists(f"{ip}-{number}") or number in chosen.values():
                number += 1
            chosen[name] = number
            number += 1
    data = {
        **chosen,
        "ip": ip,
        "transport": transport,
        "key": secrets.token_hex(32) if key is None else key,
        "signature_scheme": signature_scheme,
        "kernel_name": kernel_name,
    }
    if curve:
        import zmq

        public, secret = zmq.curve_keypair()
        data["curve_publickey"] = public.decode("ascii")
        data["curve_secretkey"] = secret.decode("ascii")
    return ConnectionInfo.from_dict(data)


def write_connection_file(
    path: _PathLike | None = None, info: ConnectionInfo | None = None, **kwargs: Any
) -> tuple[str, ConnectionInfo]:
    """Write a connection file readable by its owner only (mode 0600).

    ``info`` defaults to :func:`new_connection_info` (``kwargs`` go to it); ``path``
    defaults to a new ``kernel-<id>.json`` in Jupyter's runtime directory.
    Returns the path and the info written.
    """
    if info is None:
        info = new_connection_info(**kwargs)
    if path is None:
        runtime = Path(runtime_dir())
        runtime.mkdir(parents=True, exist_ok=True)
        path = runtime / f"kernel-{secrets.token_hex(8)}.json"
    target = os.fspath(path)
    parent = os.path.dirname(target)
    if parent:
        os.makedirs(parent, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(target, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, orjson.dumps(info.to_dict(), option=orjson.OPT_INDENT_2))
    finally:
        os.close(fd)
    return target, info


def runtime_dir() -> str:
    """Jupyter's runtime directory (where kernels put their connection files)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return str(jupyter_runtime_dir())


def find_connection_file(
    filename: str = "kernel-*.json", paths: Iterable[_PathLike] | None = None
) -> str:
    """Find a connection file by path, name or glob; the newest match wins.

    Looks in ``paths`` (default: the current directory and Jupyter's runtime
    directory). ``'1234'`` also matches ``kernel-1234.json``.
    """
    if os.path.isfile(filename):
        return os.path.abspath(filename)
    folders = [os.fspath(p) for p in paths] if paths is not None else [".", runtime_dir()]
    patterns = [filename]
    if not any(ch in filename for ch in "*?["):
        patterns.append(f"*{filename}*" if not filename.endswith(".json") else filename)
    matches: list[str] = []
    for folder in folders:
        for pattern in patterns:
            matches.extend(
                found for found in glob.glob(os.path.join(folder, pattern)) if os.path.isfile(found)
            )
    if not matches:
        raise ConnectionFileNotFound(
            f"no connection file matches in {', '.join(folders)}", path=filename
        )
    return os.path.abspath(max(set(matches), key=os.path.getmtime))


# These functions lived in kernelwire.protocol.connection until the sans-I/O protocol
# package was cut from its I/O, and code that imports them from there still finds them.
# This module puts them there, since protocol/ imports nothing above it: importing
# kernelwire (which any ``import kernelwire.protocol...`` does first) imports this module.
for _name in __all__:
    setattr(connection_model, _name, globals()[_name])
del _name
