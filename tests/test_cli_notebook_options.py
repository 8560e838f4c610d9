"""``kernelwire notebook run``'s options from papermill and ``jupyter execute`` (issue 13):
the command run in a subprocess, on a real ipykernel, with notebooks written here."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil

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
