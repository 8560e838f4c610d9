"""``kernelwire notebook run``'s options from papermill and ``jupyter execute`` (issue 13):
the command run in a subprocess, on a real ipykernel, with notebooks written here."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil

from test_cli import kernelwire
from test_cli_stopping import Command, command  # noqa: F401 - a fixture, used by name


def write_notebook(path: Path, *sources: str, **cell_metadata: Any) -> Path:
    """A notebook of code cells; ``cell_metadata`` maps ``cell<i>`` to a cell's metadata."""
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    for index, cell in enumerate(cells):
        cell.metadata.update(cell_metadata.get(f"cell{index}", {}))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))
    return path


def texts(nb: Any) -> list[str]:
    """Each cell's stream text, joined."""
    return ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]


def kernels_of(pid: int) -> list[psutil.Process]:
    """The live kernels the command of process ``pid`` started."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("JPY_PARENT_PID") == str(pid) and (
                process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_a_killed_run_leaves_the_cells_done_so_far_on_disk(
    tmp_path: Path,
    command: list[Command],  # noqa: F811
) -> None:
    """Save after each cell: while the third cell sleeps, the output file already holds
    the first two cells' outputs, and a SIGKILL (nothing cleaned up, nothing flushed)
    leaves it there, a whole notebook."""
    source = write_notebook(
        tmp_path / "slow.ipynb",
        "print('one')",
        "print('two')",
        "import time\nprint('three')\ntime.sleep(300)",
    )
    out = tmp_path / "slow.out.ipynb"
    cmd = Command(tmp_path, "notebook", "run", str(source), "-o", str(out))
    command.append(cmd)
    try:
        deadline = time.monotonic() + 90
        while not (out.exists() and texts(nbformat.read(out, as_version=4))[1] == "two\n"):
            assert time.monotonic() < deadline, "the first two cells were never saved"
            assert cmd.proc.poll() is None, cmd.proc.communicate()
            time.sleep(0.1)
        assert cmd.proc.poll() is None  # still in the third cell
        cmd.proc.send_signal(signal.SIGKILL)
        cmd.proc.wait(30)
        written = nbformat.read(out, as_version=4)
        nbformat.validate(written)
        assert texts(written)[:2] == ["one\n", "two\n"]
        assert [cell.execution_count for cell in written.cells[:2]] == [1, 2]
        assert written.cells[0].metadata["execution"]["shell.execute_reply"]
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        for kernel in kernels_of(cmd.proc.pid):  # orphaned by the SIGKILL
            kernel.kill()


def test_log_output_streams_each_output_to_stderr_as_it_arrives(tmp_path: Path) -> None:
    """``--log-output`` shows a cell's output while the cell still runs, also into a
    pipe: the cell prints, then waits for a file this test writes only once it has read
    that line from the command's stderr."""
    gate = tmp_path / "gate"
    wait = (
        "import time, pathlib, sys\n"
        "print('first', flush=True)\n"
        "for _ in range(600):\n"
        f"    if pathlib.Path({str(gate)!r}).exists(): break\n"
        "    time.sleep(0.1)\n"
        "print('gate opened' if pathlib.Path(" + repr(str(gate)) + ").exists() else 'no gate')\n"
        "print('to stderr', file=sys.stderr)"
    )
    source = write_notebook(tmp_path / "live.ipynb", wait, "6 * 7")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernelwire.cli", "notebook", "run", "--log-output", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        while not seen or seen[-1] != "first\n":
            line = proc.stderr.readline()
            assert line, f"the command ended before showing the output: {seen}"
            seen.append(line)
        gate.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    log = "".join(seen) + err
    assert log.splitlines() == [
        "--- live.ipynb: cell index 0 ---",
        "first",
        "gate opened",
        "to stderr",
        "--- live.ipynb: cell index 1 ---",
        "42",
    ]
    assert "Executed 2 code cells" in out


def test_stdout_and_stderr_files_get_the_cells_streams(tmp_path: Path) -> None:
    """``--stdout-file`` and ``--stderr-file`` receive the cells' streams (not results),
    the same file both, in order; a file that cannot be opened is a usage error."""
    source = write_notebook(
        tmp_path / "streams.ipynb",
        "import sys\nprint('out 1', flush=True)\nprint('err 1', file=sys.stderr, flush=True)",
        "print('out 2')\n'a result'",
    )
    done = kernelwire(
        "notebook", "run", str(source),
        "--stdout-file", str(tmp_path / "out.txt"), "--stderr-file", str(tmp_path / "err.txt"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "out 1\nout 2\n"
    assert (tmp_path / "err.txt").read_text() == "err 1\n"
    assert "out 1" not in done.stderr  # no --log-output: not shown
    both = tmp_path / "both.txt"
    done = kernelwire(
        "notebook", "run", str(source), "--stdout-file", str(both), "--stderr-file", str(both)
    )
    assert done.returncode == 0, done.stderr
    assert both.read_text() == "out 1\nerr 1\nout 2\n"
    bad = kernelwire("notebook", "run", str(source), "--stdout-file", str(tmp_path / "no" / "x"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"kernelwire: cannot write --stdout-file {tmp_path / 'no' / 'x'}: No such file or directory"
    ]
