"""Connection info: the model of a kernel connection file, its validation, and its files.

A connection file names the transport, address, five ports, the HMAC key and the
signature scheme. :func:`load_connection_file` validates every field and raises
:class:`~kernelwire.errors.ConnectionFileError` naming the file and the field.
"""

from __future__ import annotations

import glob
import os
import secrets
import socket
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import ConnectionFileError, ConnectionFileNotFound
from .codec import DEFAULT_SCHEME, digest_name
from .message import Channel

Transport = Literal["tcp", "ipc"]
PORT_FIELDS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
ChannelName = Channel | Literal["hb"]

_PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a kernel listens and how its messages are signed.

    >>> info = ConnectionInfo.from_dict({"ip": "127.0.0.1", "key": "k", "shell_port": 1,
    ...     "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5})
    >>> info.url("iopub")
    'tcp://127.0.0.1:2'
    """

    shell_port: int
    iopub_port: int
    stdin_port: int
    control_port: int
    hb_port: int
    ip: str = "127.0.0.1"
    key: str = field(default="", repr=False)
    transport: Transport = "tcp"
    signature_scheme: str = DEFAULT_SCHEME
    kernel_name: str = ""
    curve_publickey: str | None = field(default=None, repr=False)
    curve_secretkey: str | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: _PathLike | None = None) -> ConnectionInfo:
        """Validate ``data`` (a parsed connection file); ``path`` is named in errors."""
        if not isinstance(data, Mapping):
            raise ConnectionFileError(
                f"must be a JSON object, got {type(data).__name__}", path=path
            )

        def fail(name: str, message: str) -> ConnectionFileError:
            return ConnectionFileError(message, path=path, field=name)

        transport = data.get("transport", "tcp")
        if transport not in ("tcp", "ipc"):
            raise fail("transport", f"must be 'tcp' or 'ipc', got {transport!r}")
        ip = data.get("ip", "127.0.0.1")
        if not isinstance(ip, str) or not ip.strip():
            raise fail("ip", f"must be a non-empty string, got {ip!r}")
        ports: dict[str, int] = {}
        for name in PORT_FIELDS:
            if name not in data:
                raise fail(name, "is missing")
            port = data[name]
            if isinstance(port, bool) or not isinstance(port, int):
                raise fail(name, f"must be an integer port, got {port!r}")
            upper = 65535 if transport == "tcp" else 2**31 - 1
            if not 1 <= port <= upper:
                raise fail(name, f"port {port} is out of range 1-{upper}")
            ports[name] = port
        if "key" not in data:
            raise fail("key", 'is missing (use "" for unsigned messages)')
        key = data["key"]
        if isinstance(key, bytes):
            key = key.decode()
        if not isinstance(key, str):
            raise fail("key", f"must be a string, got {type(key).__name__}")
        scheme = data.get("signature_scheme", DEFAULT_SCHEME)
        if not isinstance(scheme, str):
            raise fail("signature_scheme", f"must be a string, got {scheme!r}")
        try:
            digest_name(scheme)
        except ValueError as exc:
            raise fail("signature_scheme", str(exc)) from None
        kernel_name = data.get("kernel_name", "")
        if not isinstance(kernel_name, str):
            raise fail("kernel_name", f"must be a string, got {kernel_name!r}")
        curve: dict[str, str] = {}
        for name in ("curve_publickey", "curve_secretkey"):
            value = data.get(name)
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            if value is None:
                continue
            if not isinstance(value, str) or len(value) != 40:
                raise fail(name, "must be a 40-character Z85 CurveZMQ key")
            curve[name] = value
        return cls(
            ip=ip,
            key=key,
            transport=transport,
            signature_scheme=scheme,
            kernel_name=kernel_name,
            curve_publickey=curve.get("curve_publickey"),
            curve_secretkey=curve.get("curve_secretkey"),
            shell_port=ports["shell_port"],
            iopub_port=ports["iopub_port"],
            stdin_port=ports["stdin_port"],
            control_port=ports["control_port"],
            hb_port=ports["hb_port"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The connection-file form of this info (the keys included)."""
        data = asdict(self)
        for name in ("curve_publickey", "curve_secretkey"):
            if data[name] is None:
                del data[name]
        return data

    @property
    def key_bytes(self) -> bytes:
        """The HMAC key as bytes."""
        return self.key.encode()

    def port(self, channel: ChannelName) -> int:
        """The port of ``channel`` (``shell``, ``iopub``, ``stdin``, ``control`` or ``hb``)."""
        return int(getattr(self, f"{channel}_port"))

    def url(self, channel: ChannelName) -> str:
        """The ZeroMQ endpoint of ``channel``."""
        port = self.port(channel)
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        host = f"[{self.ip}]" if ":" in self.ip and not self.ip.startswith("[") else self.ip
        return f"tcp://{host}:{port}"

    def with_ports(self, **ports: int) -> ConnectionInfo:
        """A copy with some ports replaced."""
        return replace(self, **ports)  # type: ignore[arg-type]


def load_connection_info(data: Mapping[str, Any] | str | bytes) -> ConnectionInfo:
    """Validate connection info given as a mapping or a JSON string."""
    if isinstance(data, (str, bytes)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ConnectionFileError(f"is not valid JSON: {exc}") from None
    return ConnectionInfo.from_dict(data)  # type: ignore[arg-type]


def load_connection_file(path: _PathLike) -> ConnectionInfo:
    """Read and validate a connection file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConnectionFileNotFound("no such file", path=path) from None
    except OSError as exc:
        raise ConnectionFileError(f"cannot be read: {exc.strerror or exc}", path=path) from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConnectionFileError(f"is not valid JSON: {exc}", path=path) from None
    return ConnectionInfo.from_dict(data, path)


def free_tcp_ports(ip: str = "127.0.0.1", count: int = 5) -> list[int]:
    """``count`` distinct ports that were free on ``ip`` a moment ago.

    All sockets are held open until every port is chosen, so the ports differ. Another
    process may still take one before the kernel binds it.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((ip, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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
