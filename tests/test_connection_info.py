"""Connection files: validation naming the file and the field, writing, finding."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelwire import BlockingKernelClient, ConnectionFileError, connection_file
from kernelwire.connection_file import (
    find_connection_file,
    load_connection_file,
    new_connection_info,
    write_connection_file,
)
from kernelwire.protocol.connection import PORT_FIELDS, load_connection_info

VALID: dict[str, Any] = {
    "shell_port": 50001,
    "iopub_port": 50002,
    "stdin_port": 50003,
    "control_port": 50004,
    "hb_port": 50005,
    "ip": "127.0.0.1",
    "key": "secret",
    "transport": "tcp",
    "signature_scheme": "hmac-sha256",
    "kernel_name": "python3",
}


def write(tmp_path: Path, data: Any, name: str = "kernel.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_valid_file_loads(tmp_path: Path) -> None:
    info = load_connection_file(write(tmp_path, VALID))
    assert info.url("shell") == "tcp://127.0.0.1:50001" and info.key_bytes == b"secret"
    ipc = load_connection_file(
        write(tmp_path, dict(VALID, transport="ipc", ip="/tmp/k"), "ipc.json")
    )
    assert ipc.url("hb") == "ipc:///tmp/k-50005"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"shell_port": None}, "shell_port", "integer"),
        ({"iopub_port": "5555"}, "iopub_port", "integer"),
        ({"stdin_port": 0}, "stdin_port", "out of range"),
        ({"control_port": 70000}, "control_port", "out of range"),
        ({"hb_port": True}, "hb_port", "integer"),
        ({"transport": "udp"}, "transport", "'tcp' or 'ipc'"),
        ({"signature_scheme": "hmac-nope"}, "signature_scheme", "unknown hash"),
        ({"signature_scheme": "plain"}, "signature_scheme", "hmac-<hash>"),
        ({"key": 42}, "key", "string"),
        ({"ip": ""}, "ip", "non-empty"),
    ],
)
def test_invalid_field_names_file_and_field(
    tmp_path: Path, change: dict[str, Any], field: str, words: str
) -> None:
    path = write(tmp_path, {**VALID, **change})
    with pytest.raises(ConnectionFileError) as excinfo:
        load_connection_file(path)
    assert excinfo.value.path == str(path) and excinfo.value.field == field
    assert (
        str(path) in str(excinfo.value)
        and field in str(excinfo.value)
        and words in str(excinfo.value)
    )


@pytest.mark.parametrize("missing", [*PORT_FIELDS, "key"])
def test_missing_field(tmp_path: Path, missing: str) -> None:
    path = write(tmp_path, {k: v for k, v in VALID.items() if k != missing})
    with pytest.raises(ConnectionFileError, match="is missing") as excinfo:
        load_connection_file(path)
    assert excinfo.value.field == missing


@pytest.mark.parametrize(
    ("content", "words"), [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")]
)
def test_not_a_connection_file(tmp_path: Path, content: str, words: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConnectionFileError, match=words) as excinfo:
        load_connection_file(path)
    assert excinfo.value.field is None and excinfo.value.path == str(path)


def test_missing_file_and_client_loading(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError, match="no such file"):
        load_connection_file(tmp_path / "absent.json")
    with pytest.raises(ConnectionFileError, match="shell_port"):
        BlockingKernelClient().load_connection_file(write(tmp_path, {**VALID, "shell_port": "x"}))


def test_written_files_are_private_fresh_and_round_trip(tmp_path: Path) -> None:
    first_path, first = write_connection_file(tmp_path / "a.json")
    _second_path, second = write_connection_file(tmp_path / "b.json")
    assert stat.S_IMODE(os.stat(first_path).st_mode) == 0o600
    assert first.key != second.key and len(first.key) == 64
    ports = [first.port(ch) for ch in ("shell", "iopub", "stdin", "control", "hb")]
    assert len(set(ports)) == 5
    assert load_connection_file(first_path) == first


def test_ipc_connection_info(tmp_path: Path) -> None:
    info = new_connection_info(transport="ipc", ip=str(tmp_path / "kernel"))
    assert info.transport == "ipc" and len({info.url(ch) for ch in ("shell", "iopub", "hb")}) == 3


def test_find_connection_file(tmp_path: Path) -> None:
    older = write(tmp_path, VALID, "kernel-111.json")
    time.sleep(0.01)
    newer = write(tmp_path, VALID, "kernel-222.json")
    os.utime(older, (time.time() - 100, time.time() - 100))
    assert find_connection_file(str(older)) == str(older)
    assert find_connection_file("kernel-111.json", [tmp_path]) == str(older)
    assert find_connection_file("111", [tmp_path]) == str(older)
    assert find_connection_file("kernel-*.json", [tmp_path]) == str(newer)
    with pytest.raises(ConnectionFileError, match="no connection file matches"):
        find_connection_file("kernel-999.json", [tmp_path])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*VALID, "curve_publickey"]),
        st.none() | st.integers() | st.text(max_size=12) | st.booleans() | st.floats(),
    )
)
def test_any_document_is_info_or_connection_file_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionFileError):
        load_connection_info({**VALID, **data})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_info_or_connection_file_error(data: bytes) -> None:
    with contextlib.suppress(ConnectionFileError):
        load_connection_info(data)


def test_the_old_import_paths_of_the_connection_file_functions_still_work() -> None:
    # They lived in kernelwire.protocol.connection, which no longer imports them (the
    # sans-I/O package imports nothing above it): a fresh interpreter still finds them there.
    names = ", ".join(connection_file.__all__)
    code = (
        f"from kernelwire.protocol.connection import {names}\n"
        "import kernelwire.connection_file as moved\n"
        f"assert [{names}] == [getattr(moved, n) for n in moved.__all__]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
