"""Kernel.run / stream: what a notebook shows, on a real ipykernel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernelwire import ExecutionError, Kernel, KernelTimeout, start_kernel, start_kernel_async
from kernelwire.execution import OutputCollector, process_control_characters

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with start_kernel("python3") as k:
        yield k


def test_the_issue_example(kernel: Kernel) -> None:
    result = kernel.run("import sys\nprint('hi')\n6 * 7")
    assert result.status == "ok" and isinstance(result.execution_count, int)
    assert (result.stdout, result.stderr, result.text) == ("hi\n", "", "42")
    assert [o["output_type"] for o in result.outputs] == ["stream", "execute_result"]
    assert result.outputs[1]["execution_count"] == result.execution_count


def test_errors(kernel: Kernel) -> None:
    result = kernel.run("1/0")
    assert result.status == "error" and result.outputs[-1]["output_type"] == "error"
    with pytest.raises(ExecutionError) as excinfo:
        result.raise_for_error()
    assert excinfo.value.ename == "ZeroDivisionError" and excinfo.value.evalue == "division by zero"
    assert any("ZeroDivisionError" in line for line in excinfo.value.traceback)
    assert kernel.run("1").raise_for_error().text == "1"


def test_each_output_kind(kernel: Kernel) -> None:
    code = (
        "import sys\nfrom IPython.display import display, HTML\n"
        "print('out')\nprint('err', file=sys.stderr)\ndisplay(HTML('<b>x</b>'))\n'result'"
    )
    result = kernel.run(code)
    kinds = [(o["output_type"], o.get("name")) for o in result.outputs]
    assert kinds == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("display_data", None),
        ("execute_result", None),
    ]
    assert result.outputs[2]["data"]["text/html"] == "<b>x</b>"


def test_streams_coalesced_and_control_characters_applied(kernel: Kernel) -> None:
    code = (
        "import sys\nfor i in range(5):\n    print(f'\\r{i * 25}%', end='', flush=True)\n"
        "print()\nprint('a\\bb')"
    )
    result = kernel.run(code)
    assert [o["output_type"] for o in result.outputs] == ["stream"]
    assert result.stdout == "100%\nb\n"


def test_stream_yields_outputs_as_they_arrive(kernel: Kernel) -> None:
    seen = []
    for output in kernel.stream(
        "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
    ):
        seen.append((time.monotonic(), output["text"]))
    assert seen[-1][1] == "0\n1\n2\n"
    assert len(seen) >= 2 and seen[-1][0] - seen[0][0] > 0.2  # not all at the end


def test_stdin(kernel: Kernel) -> None:
    prompts = []

    def answer(prompt: str, password: bool) -> str:
        prompts.append((prompt, password))
        return "Ada"

    assert kernel.run("input('name? ')", stdin=answer).text == "'Ada'"
    assert prompts == [("name? ", False)]
    refused = kernel.run("input('name? ')")  # no stdin handler: input() is not allowed
    assert refused.status == "error" and "StdinNotImplementedError" in refused.outputs[-1]["ename"]


def test_timeout_interrupts_and_raises(kernel: Kernel) -> None:
    started = time.monotonic()
    with pytest.raises(KernelTimeout) as excinfo:
        kernel.run("import time\nprint('started', flush=True)\ntime.sleep(100)", timeout=2)
    assert time.monotonic() - started < 6
    partial = excinfo.value.result  # type: ignore[attr-defined]
    assert partial.stdout == "started\n" and partial.error.ename == "KeyboardInterrupt"
    assert kernel.run("'still usable'").text == "'still usable'"


def test_display_updates_and_clear_output(kernel: Kernel) -> None:
    code = (
        "from IPython.display import display, update_display, clear_output\n"
        "display('one', display_id='u')\nprint('between')\nupdate_display('two', display_id='u')"
    )
    result = kernel.run(code)
    assert [o.get("data", {}).get("text/plain") for o in result.outputs] == ["'two'", None]
    cleared = kernel.run(
        "from IPython.display import clear_output\nprint('gone')\nclear_output()\nprint('kept')"
    )
    assert cleared.stdout == "kept\n"
    waited = kernel.run("for i in range(3):\n    clear_output(wait=True)\n    print('step', i)")
    assert waited.stdout == "step 2\n"


def test_output_cap_truncates_with_a_marker(kernel: Kernel) -> None:
    result = kernel.run("for i in range(1000):\n    print('x' * 99)", max_output_chars=1000)
    assert len(result.stdout) == 1000
    assert "output truncated" in result.stderr and "99000" in result.stderr


def test_async_run_and_stream() -> None:
    async def main() -> None:
        async with await start_kernel_async("python3") as kernel:
            result = await kernel.run("print('hi')\n6 * 7")
            assert (result.stdout, result.text) == ("hi\n", "42")
            texts = [o["text"] async for o in kernel.stream("print('streamed')")]
            assert texts == ["streamed\n"]
            with pytest.raises(KernelTimeout):
                await kernel.run("import time; time.sleep(100)", timeout=1)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("abc\rd", "dbc"),
        ("10%\r100%\n", "100%\n"),
        ("ab\b\bc", "c"),
        ("\bx", "x"),
        ("l1\nab\rc\n", "l1\ncb\n"),
    ],
)
def test_control_characters(text: str, shown: str) -> None:
    assert process_control_characters(text) == shown


def test_collector_without_front_end_keeps_messages_apart() -> None:
    collector = OutputCollector(front_end=False)
    for text in ("a\r", "b\n"):
        collector.feed({"msg_type": "stream", "content": {"name": "stdout", "text": text}})  # type: ignore[arg-type]
    assert [o["text"] for o in collector.outputs] == ["a\r", "b\n"]


@pytest.mark.parametrize(
    "msg_type, content",
    [
        (
            "execute_result",
            {
                "data": {"text/plain": "1", "application/json": {"a": [1]}},
                "metadata": {},
                "execution_count": 3,
            },
        ),
        ("display_data", {"data": {"image/png": "iVBOR"}, "metadata": {"image/png": {"width": 2}}}),
        ("error", {"ename": "ValueError", "evalue": "no", "traceback": ["line 1", "line 2"]}),
    ],
)
def test_outputs_are_the_nodes_nbformat_builds(msg_type: str, content: dict[str, object]) -> None:
    from nbformat import from_dict
    from nbformat.v4 import output_from_msg as nbformat_output

    from kernelwire import OutputNode
    from kernelwire.execution import output_from_msg

    msg = {"msg_type": msg_type, "header": {"msg_type": msg_type}, "content": content}
    theirs = nbformat_output(msg)  # type: ignore[arg-type]
    light = output_from_msg(msg)  # type: ignore[arg-type]
    assert light == theirs
    assert type(light) is OutputNode and type(light.get("data", light)) is OutputNode
    assert light.output_type == msg_type  # keys read as attributes, as in nbformat's nodes
    # with nbformat's from_dict (the notebook runner's), nbformat's own node types
    ours = output_from_msg(msg, from_dict)  # type: ignore[arg-type]
    assert ours == theirs
    assert type(ours) is type(theirs) and type(ours.get("data", ours)) is type(
        theirs.get("data", theirs)
    )


def test_run_imports_no_nbformat(tmp_path: Path) -> None:
    """``import kernelwire`` and running code leave nbformat (seconds of schema
    validator on a loaded machine) unimported: it is for notebooks."""
    code = (
        "import sys, kernelwire\n"
        "with kernelwire.start_kernel('python3') as kernel:\n"
        "    out = kernel.run('print(1); 2').outputs\n"
        "print([o.output_type for o in out], sorted(m for m in ('nbformat', 'jsonschema', "
        "'httpx', 'kernelwire.notebook', 'kernelwire.remote') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['stream', 'execute_result'] []"
