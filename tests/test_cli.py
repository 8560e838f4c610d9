"""The kernelwire command, run for real in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def kernelwire(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelwire.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_code_prints_streams_and_result() -> None:
    done = kernelwire("run", "-c", "print('hi')\n6 * 7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n42\n"


def test_run_error_exits_1_with_traceback() -> None:
    done = kernelwire("run", "-c", "1/0")
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr


def test_run_file_and_stdin(tmp_path: Path) -> None:
    script = tmp_path / "code.py"
    script.write_text("print('from file')")
    assert kernelwire("run", str(script)).stdout == "from file\n"
    assert kernelwire("run", "-", stdin="print('from stdin')").stdout == "from stdin\n"


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    done = kernelwire("run", str(tmp_path / "nope.py"))
    assert done.returncode != 0
    assert "cannot read" in done.stderr and "nope.py" in done.stderr


def test_kernels_lists_specs() -> None:
    done = kernelwire("kernels")
    assert done.returncode == 0
    assert "python3" in done.stdout
    import json

    specs = json.loads(kernelwire("kernels", "--json").stdout)
    assert specs["python3"]["language"] == "python"


def test_start_prints_how_to_connect_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    from kernelwire import BlockingKernelClient

    path = tmp_path / "started.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernelwire.cli", "start", "--connection-file", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "Started kernel python3" in lines[0]
        assert str(path) in lines[1]
        with BlockingKernelClient(str(path)) as client:
            assert client.execute("1", reply=True, timeout=60)["content"]["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 5
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not path.exists()
    finally:
        proc.kill()
        proc.wait()


def test_unknown_kernel_is_a_one_line_error() -> None:
    done = kernelwire("start", "-k", "no-such-kernel")
    assert done.returncode == 2
    assert "no kernel named 'no-such-kernel'" in done.stderr and "python3" in done.stderr
