"""The classic jupyter_client flow, unchanged but for the import, on real kernels."""

from __future__ import annotations

import queue
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kernelwire import BlockingKernelClient, KernelProcess, get_messages, run_kernel_in_process


def classic_flow(
    client_class: Any, connection_file: str, code: str, check_alive: bool = True
) -> tuple[str, list[dict[str, Any]]]:
    client = client_class()
    client.load_connection_file(connection_file)
    client.start_channels()
    try:
        # jupyter_client's is_alive() is False until its heartbeat thread first beats.
        assert client.is_alive() or not check_alive
        msg_id = client.execute(code)
        msgs = []
        while True:
            try:
                msgs.append(client.get_iopub_msg(timeout=2))
            except queue.Empty:
                break
    finally:
        client.stop_channels()
    return msg_id, msgs


def check_flow(msg_id: str, msgs: list[dict[str, Any]], result: str) -> None:
    assert [m["msg_type"] for m in msgs] == ["status", "execute_input", "execute_result", "status"]
    assert [m["content"].get("execution_state") for m in (msgs[0], msgs[-1])] == ["busy", "idle"]
    assert msgs[2]["content"]["data"]["text/plain"] == result
    for msg in msgs:
        assert set(msg) == {
            "header",
            "msg_id",
            "msg_type",
            "parent_header",
            "metadata",
            "content",
            "buffers",
        }
        assert msg["parent_header"]["msg_id"] == msg_id
        assert msg["msg_id"] == msg["header"]["msg_id"]
        assert isinstance(msg["header"]["date"], datetime)
        assert msg["header"]["date"].tzinfo is not None


def test_issue_flow_on_ipykernel(tmp_path: Path) -> None:
    path = str(tmp_path / "connection_file.json")
    kernel = run_kernel_in_process(connection_file=path)
    try:
        msg_id, msgs = classic_flow(BlockingKernelClient, path, "x = 42\ny = x * 2\ny")
    finally:
        kernel.stop()
    check_flow(msg_id, msgs, "84")
    assert not kernel.is_alive()
    assert not Path(path).exists()


def test_same_messages_as_jupyter_client(ipykernel: KernelProcess) -> None:
    jupyter_client = pytest.importorskip("jupyter_client")
    _, ours = classic_flow(BlockingKernelClient, ipykernel.connection_file, "6 * 7")
    _, theirs = classic_flow(
        jupyter_client.BlockingKernelClient, ipykernel.connection_file, "6 * 7", check_alive=False
    )
    theirs = [m for m in theirs if m["msg_type"] != "iopub_welcome"]
    assert [m["msg_type"] for m in ours] == [m["msg_type"] for m in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        assert set(mine) == set(reference)
        for key in mine:
            assert isinstance(mine[key], type(reference[key])), key
        assert set(mine["header"]) == set(reference["header"])
        assert type(mine["header"]["date"]) is type(reference["header"]["date"])
        assert mine["content"].keys() == reference["content"].keys()


def test_flow_on_xeus_python(xeus_connection_file: str) -> None:
    msg_id, msgs = classic_flow(BlockingKernelClient, xeus_connection_file, "x = 42\ny = x * 2\ny")
    check_flow(msg_id, msgs, "84")


def test_get_messages_returns_exactly_that_request(ipykernel: KernelProcess) -> None:
    msgs = get_messages(ipykernel.connection_file, "print('hello')\n1 + 1", timeout=30)
    assert [m["msg_type"] for m in msgs] == [
        "status",
        "execute_input",
        "stream",
        "execute_result",
        "status",
    ]
    assert msgs[2]["content"]["text"] == "hello\n"
    assert len({m["parent_header"]["msg_id"] for m in msgs}) == 1


def test_get_messages_on_xeus(xeus_connection_file: str) -> None:
    msgs = get_messages(xeus_connection_file, "3 * 3", timeout=30)
    assert [m["msg_type"] for m in msgs] == ["status", "execute_input", "execute_result", "status"]
    assert msgs[2]["content"]["data"]["text/plain"] == "9"
