"""Connection info: the model of a kernel connection file and its validation, sans-I/O.

A connection file names the transport, address, five ports, the HMAC key and the
signature scheme. :meth:`ConnectionInfo.from_dict` validates every field and raises
:class:`~kernelwire.errors.ConnectionFileError` naming the file and the field.
Reading, writing and finding connection files, and choosing free ports, are I/O: they
live in :mod:`kernelwire.connection_file`, which this module does not import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import orjson

from ..errors import ConnectionFileError
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


def load_connection_info(
    data: Mapping[str, Any] | str | bytes, path: _PathLike | None = None
) -> ConnectionInfo:
    """Validate connection info given as a mapping or a JSON document (read from
    ``path``, which errors name)."""
    if not isinstance(data, (str, bytes)):
        return ConnectionInfo.from_dict(data, path)
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConnectionFileError(f"is not valid JSON: {exc}", path=path) from None
    return ConnectionInfo.from_dict(parsed, path)
