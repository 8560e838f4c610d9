"""The Jupyter tools that run on jupyter_client's manager API, run on kernelwire's:
nbclient, papermill, and jupyter_console on a kernel started by ``kernelwire start``."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from test_notebook import NOTEBOOKS, nbclient_on_jupyter_client, normalised

pytest.importorskip("jupyter_client", reason="the manager layer subclasses jupyter_client's")

from kernelwire import BlockingKernelClient
from kernelwire.manager import AsyncKernelManager, KernelManager

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbclient_on_kernelwire_manager_gives_nbclients_outputs(path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    theirs = nbformat.read(path, as_version=4)
    if any("ipywidgets" in cell.source for cell in theirs.cells):
        # nbclient on jupyter_client's own manager hangs on this one now and then (see
        # test_notebook.run_nbclient): the reference is kernelwire's runner, which
        # test_notebook compares with nbclient.
        from kernelwire import notebook

        theirs = notebook.execute(path, allow_errors=True, timeout=120)
    else:
        nbclient_on_jupyter_client(nbclient, theirs, allow_errors=True)
    ours = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        ours,
        kernel_name="python3",
        allow_errors=True,
        timeout=120,
        kernel_manager_class=AsyncKernelManager,
    )
    client.execute()
    assert normalised(ours) == normalised(theirs)


def test_nbclient_with_a_blocking_kernelwire_manager() -> None:
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    km = KernelManager(kernel_name="python3")
    try:
        nbclient.NotebookClient(nb, km=km, timeout=60).execute()
        assert nb.cells[0].outputs[0]["text"] == "42\n"
        assert km.is_alive()  # a manager given to nbclient is the caller's to shut down
    finally:
        km.shutdown_kernel(now=True)
    assert not km.has_kernel


@pytest.fixture
def parameterized_notebook(tmp_path: Path) -> Path:
    """A notebook with a ``parameters`` cell, as papermill expects."""
    params = nbformat.v4.new_code_cell("alpha = 0.1\nlabel = 'default'")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[params, nbformat.v4.new_code_cell("print(label, alpha * 2)")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = tmp_path / "in.ipynb"
    nbformat.write(nb, path)
    return path


def test_papermill_runs_a_parameterized_notebook_on_kernelwire(
    parameterized_notebook: Path, tmp_path: Path
) -> None:
    papermill = pytest.importorskip("papermill")
    from papermill.engines import papermill_engines

    from kernelwire.papermill import KernelwireEngine

    # The entry point registers it in an installed kernelwire; register it here too so
    # the test does not depend on how the package was installed.
    papermill_engines.register("kernelwire", KernelwireEngine)
    used: list[type] = []
    original = AsyncKernelManager.start_kernel

    async def spy(self: AsyncKernelManager, **kw: object) -> None:
        used.append(type(self))
        await original(self, **kw)

    out = tmp_path / "out.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AsyncKernelManager, "start_kernel", spy)
        papermill.execute_notebook(
            str(parameterized_notebook),
            str(out),
            parameters={"alpha": 0.5, "label": "given"},
            engine_name="kernelwire",
            progress_bar=False,
        )
    assert used == [AsyncKernelManager]
    result = nbformat.read(out, as_version=4)
    injected = [c for c in result.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "alpha = 0.5" in injected[0].source
    assert result.cells[-1].outputs[0]["text"] == "given 1.0\n"
    assert result.metadata["papermill"]["parameters"] == {"alpha": 0.5, "label": "given"}
    assert all(c.metadata["papermill"]["status"] == "completed" for c in result.cells)


@contextlib.contextmanager
def kernelwire_start(connection_file: Path) -> Iterator[subprocess.Popen[str]]:
    """``kernelwire start`` in a child process, stopped with Ctrl-C afterwards."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernelwire.cli",
            "start",
            "--connection-file",
            str(connection_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ctrl-C" in line:
                break
        else:
            raise AssertionError("kernelwire start ended before the kernel started")
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert not connection_file.exists()


def test_jupyter_console_on_a_kernel_from_kernelwire_start(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    pytest.importorskip("jupyter_console")
    path = tmp_path / "kernel.json"
    with kernelwire_start(path):
        console = pexpect.spawn(
            sys.executable,
            ["-m", "jupyter_console", "--existing", str(path)],
            encoding="utf-8",
            timeout=60,
            dimensions=(24, 120),
        )
        try:
            console.expect(r"In \[")  # the prompt: the console reached the kernel
            console.send("print(6 * 7)\r")
            console.expect("42")
            console.expect(r"In \[")
            console.send("exit(keep_kernel=True)\r")
            console.expect(pexpect.EOF)
        finally:
            console.close(force=True)
        with BlockingKernelClient(str(path)) as kc:  # the kernel was kept, as asked
            assert kc.execute("1", reply=True, timeout=30)["content"]["status"] == "ok"
