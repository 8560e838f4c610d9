"""run_kernel_in_process: custom kernel classes, taken ports, start-up failures, no orphans."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kernels_for_tests import BrokenKernel, EchoKernel, WedgedKernel
from kernelwire import (
    BlockingKernelClient,
    KernelDied,
    KernelTimeout,
    PortInUse,
    requests,
    run_kernel_in_process,
)


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0): look at its state
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_custom_kernel_class(tmp_path: Path) -> None:
    path = tmp_path / "echo.json"
    with run_kernel_in_process(path, kernel_class=EchoKernel) as kernel:
        assert kernel.is_alive()
        with BlockingKernelClient(kernel.connection_file) as client:
            info = client.kernel_info(reply=True, timeout=30)["content"]
            assert info["implementation"] == "echo"
            pending = client.submit(requests.execute("abc"))
            outputs = [
                m for m in pending.iopub(30) if m["msg_type"] in ("stream", "execute_result")
            ]
        assert outputs[0]["content"]["text"] == "abc"
        assert outputs[1]["content"]["data"]["text/plain"] == "ABC"
    assert wait_gone(kernel.pid)
    assert not path.exists()


def test_kernel_class_must_be_a_kernel() -> None:
    with pytest.raises(TypeError, match="subclass of ipykernel"):
        run_kernel_in_process(kernel_class=dict)


def test_second_kernel_on_a_taken_connection_file(tmp_path: Path) -> None:
    path = tmp_path / "taken.json"
    with run_kernel_in_process(path) as first:
        started = time.monotonic()
        with pytest.raises(PortInUse) as excinfo:
            run_kernel_in_process(path)
        assert time.monotonic() - started < 5
        assert str(path) in str(excinfo.value)
        assert "already in use" in str(excinfo.value)
        assert excinfo.value.field.endswith("_port")
        assert first.is_alive()


def test_kernel_dying_at_startup_reports_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(KernelDied) as excinfo:
        run_kernel_in_process(
            tmp_path / "broken.json", kernel_class=BrokenKernel, startup_timeout=60
        )
    assert "broken kernel refuses to start" in str(excinfo.value)
    assert excinfo.value.exit_code not in (None, 0)
    assert not (tmp_path / "broken.json").exists()


def test_a_kernel_hung_in_its_start_times_out_with_its_stacks(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(KernelTimeout) as excinfo:
        run_kernel_in_process(
            tmp_path / "wedged.json", kernel_class=WedgedKernel, startup_timeout=10
        )
    assert time.monotonic() - started < 40
    message = str(excinfo.value)
    assert "kernel WedgedKernel did not answer within 10 s (it used" in message
    # Its threads' stacks say where it is: in WedgedKernel's wait, unless a loaded
    # machine left it still importing after 10 s.
    assert "(most recent call first):" in message, message
    assert not (tmp_path / "wedged.json").exists()


def test_stopped_when_garbage_collected(tmp_path: Path) -> None:
    kernel = run_kernel_in_process(tmp_path / "gc.json")
    pid = kernel.pid
    del kernel
    gc.collect()
    assert wait_gone(pid)
    assert not (tmp_path / "gc.json").exists()


SCRIPT = """
from ipykernel.kernelbase import Kernel
from kernelwire import BlockingKernelClient, run_kernel_in_process

class ScriptKernel(Kernel):
    implementation = "script"
    implementation_version = "1"
    language_info = {{"name": "script"}}
    banner = ""

kernel = run_kernel_in_process({path!r}, kernel_class=ScriptKernel)
with BlockingKernelClient(kernel.connection_file) as client:
    print(client.kernel_info(reply=True, timeout=30)["content"]["implementation"])
print(kernel.pid)
"""


@pytest.mark.parametrize("how", ["script", "-c", "stdin"])
def test_works_without_main_guard(tmp_path: Path, how: str) -> None:
    """A script with no __main__ guard, python -c and stdin: the class travels by value."""
    code = SCRIPT.format(path=str(tmp_path / "k.json"))
    if how == "script":
        script = tmp_path / "script.py"
        script.write_text(code)
        argv, stdin = [sys.executable, str(script)], None
    elif how == "-c":
        argv, stdin = [sys.executable, "-c", code], None
    else:
        argv, stdin = [sys.executable, "-"], code
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "script"
    assert wait_gone(int(lines[1])), "the kernel must be stopped at interpreter exit"
    assert not (tmp_path / "k.json").exists()


def test_inside_a_running_notebook_kernel(ipykernel_path_kernel: str) -> None:
    """From a notebook cell: no singleton clash, no inherited -f, the child answers."""
    code = textwrap.dedent(
        """
        from kernelwire import BlockingKernelClient, run_kernel_in_process
        inner = run_kernel_in_process()
        with BlockingKernelClient(inner.connection_file) as c:
            r = c.execute("import sys", reply=True, timeout=60,
                          user_expressions={"argv": "sys.argv"})
        inner_argv = r["content"]["user_expressions"]["argv"]["data"]["text/plain"]
        inner.stop()
        inner_argv
        """
    )
    with BlockingKernelClient(ipykernel_path_kernel) as outer:
        reply = outer.execute(
            code, reply=True, timeout=120, user_expressions={"argv": "inner_argv"}
        )
    assert reply["content"]["status"] == "ok", reply["content"]
    argv = reply["content"]["user_expressions"]["argv"]["data"]["text/plain"]
    assert "connection_file.json" not in argv  # the outer kernel's own -f is not inherited


@pytest.fixture
def ipykernel_path_kernel(tmp_path: Path) -> str:  # type: ignore[misc]
    path = tmp_path / "connection_file.json"
    with run_kernel_in_process(path) as kernel:
        yield kernel.connection_file


def test_existing_connection_file_is_used_as_is(tmp_path: Path) -> None:
    from kernelwire.connection_file import write_connection_file

    path, info = write_connection_file(tmp_path / "mine.json")
    with run_kernel_in_process(path) as kernel:
        assert kernel.connection_info == info
        assert json.loads(Path(path).read_text())["key"] == info.key
    assert Path(path).exists(), "a file the caller wrote is the caller's to remove"
