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
