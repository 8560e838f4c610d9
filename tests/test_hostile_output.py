"""Output content a notebook cannot keep (mistyped fields) never crashes run, stream or
notebook execution: the message is kept as a marker output showing what the kernel sent.

ipykernel never sends such messages by itself; code run in it sends them through the
kernel's own session and IOPub socket (fault injection from inside a real kernel).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from kernelwire import ExecutionResult, Kernel, start_kernel, start_kernel_async
from kernelwire.execution import OutputCollector
from kernelwire.notebook import execute_many
from kernelwire.protocol.codec import Session

pytestmark = pytest.mark.usefixtures("no_leaks")

SEND_RAW = """
def _send_raw(msg_type, content):
    kernel = get_ipython().kernel
    kernel.session.send(kernel.iopub_socket, msg_type, content, parent=kernel.get_parent("shell"))
"""

# (msg_type, content, what the marker must name)
MISTYPED: list[tuple[str, dict[str, Any], str]] = [
    ("stream", {"name": "stdout", "text": 5}, "text is int"),
    ("stream", {"name": "stdout", "text": [1, 2]}, "text is a list holding int"),
    ("stream", {"name": "stdout", "text": None}, "text is null"),
    ("stream", {"name": 3, "text": "x"}, "name is int"),
    ("display_data", {"data": [1], "metadata": {}}, "data is list"),
    ("display_data", {"data": {"text/plain": 7}, "metadata": {}}, "data['text/plain'] is int"),
    ("display_data", {"data": {}, "metadata": [1]}, "metadata is list"),
    ("execute_result", {"data": {}, "metadata": {}, "execution_count": "1"}, "execution_count"),
    ("error", {"ename": "E", "evalue": "v", "traceback": 3}, "traceback is int"),
    ("error", {"ename": ["E"], "evalue": "v", "traceback": []}, "ename is list"),
    ("display_data", {"data": {}, "metadata": {}, "transient": {"display_id": [1]}}, "display_id"),
    (
        "update_display_data",
        {"data": [1], "metadata": {}, "transient": {"display_id": "d"}},
        "data",
    ),
]
IDS = [f"{msg_type}-{why}" for msg_type, _, why in MISTYPED]


def send_raw(msg_type: str, content: dict[str, Any]) -> str:
    return f"_send_raw({msg_type!r}, {content!r})"


def assert_valid_outputs(outputs: list[Any]) -> None:
    """The outputs can be saved in a notebook (nbformat's schema accepts them)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = outputs
    nb.cells.append(cell)
    nbformat.validate(nb)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with start_kernel("python3") as k:
        k.run(SEND_RAW).raise_for_error()
        yield k


@pytest.mark.parametrize(("msg_type", "content", "why"), MISTYPED, ids=IDS)
def test_run_keeps_a_mistyped_output_as_a_marker(
    kernel: Kernel, msg_type: str, content: dict[str, Any], why: str
) -> None:
    # A valid display first, so that an update for it has something to update.
    code = "from IPython.display import display\ndisplay('shown', display_id='d')\n"
    code += send_raw(msg_type, content) + "\nprint('after')"
    result = kernel.run(code, timeout=60)
    assert result.status == "ok"
    markers = [
        o for o in result.outputs if "kernelwire: the kernel sent an invalid" in o.get("text", "")
    ]
    assert len(markers) == 1, result.outputs
    assert msg_type in markers[0]["text"] and why in markers[0]["text"]
    assert result.stdout == "after\n"  # and what came after is kept
    assert_valid_outputs(result.outputs)


def test_a_stream_text_as_a_list_of_strings_is_joined(kernel: Kernel) -> None:
    result = kernel.run(send_raw("stream", {"name": "stdout", "text": ["a\n", "b\n"]}))
    assert result.stdout == "a\nb\n"
    assert_valid_outputs(result.outputs)


def test_stream_yields_the_marker(kernel: Kernel) -> None:
    code = send_raw("error", {"ename": "E", "evalue": "v", "traceback": 3})
    outputs = list(kernel.stream(code, timeout=60))
    assert len(outputs) == 1 and "traceback is int" in outputs[0]["text"]


def test_asyncio_run_keeps_a_mistyped_output_as_a_marker() -> None:
    async def main() -> ExecutionResult:
        async with await start_kernel_async("python3") as kernel:
            await kernel.run(SEND_RAW)
            return await kernel.run(send_raw("display_data", {"data": [1], "metadata": {}}))

    result = asyncio.run(main())
    assert result.status == "ok" and "data is list" in result.stderr


def test_a_batch_reports_per_notebook_and_runs_the_others(tmp_path: Path) -> None:
    hostile = nbformat.v4.new_notebook()
    hostile.cells = [
        nbformat.v4.new_code_cell(SEND_RAW),
        *(nbformat.v4.new_code_cell(send_raw(t, c)) for t, c, _ in MISTYPED),
        nbformat.v4.new_code_cell("print('last cell')"),
    ]
    fine = nbformat.v4.new_notebook()
    fine.cells = [nbformat.v4.new_code_cell("print('fine')")]
    runs = execute_many([hostile, fine], kernel_name="python3")
    assert [run.ok for run in runs] == [True, True], [run.error for run in runs]
    assert runs[0].notebook is not None and runs[1].notebook is not None
    cells = runs[0].notebook.cells
    for cell in cells[1:-1]:
        assert any(
            "kernelwire: the kernel sent an invalid" in o.get("text", "") for o in cell.outputs
        )
    assert cells[-1].outputs[0]["text"] == "last cell\n"
    assert runs[1].notebook.cells[0].outputs[0]["text"] == "fine\n"
    path = tmp_path / "out.ipynb"
    nbformat.write(runs[0].notebook, path)  # valid: it can be saved
    nbformat.validate(nbformat.read(path, as_version=4))


# -- sans-I/O: the collector alone, fed synthetic messages -----------------------------


@pytest.mark.parametrize(("msg_type", "content", "why"), MISTYPED, ids=IDS)
def test_the_collector_never_raises_on_mistyped_content(
    msg_type: str, content: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    session = Session()
    collector = OutputCollector(displays={"d": []})
    with caplog.at_level(logging.WARNING, logger="kernelwire.execution"):
        shown = collector.feed(session.message(msg_type, content))
    assert shown is not None and why in shown["text"]
    assert collector.invalid == 1
    assert why in caplog.text
    assert_valid_outputs(collector.outputs)


def test_an_error_reply_with_mistyped_fields_still_gives_an_execution_error() -> None:
    reply = Session().message("execute_reply", {"status": "error", "ename": 5, "traceback": 3})
    error = ExecutionResult(status="error", execution_count=None, reply=reply).error
    assert error is not None and error.ename == "error" and error.traceback == []
