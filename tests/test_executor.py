"""Notebook batches on an executor: a real Dask LocalCluster with worker processes, and a
process pool (issue 16)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest

from kernelwire import notebook
from kernelwire.errors import CellExecutionError, KernelDied, NoSuchKernel
from test_notebook import normalised

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(300)


def write_notebook(path: Path, *sources: str, kernel: str = "python3") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def local_dask(workers: int) -> Iterator[Any]:
    """A client of a LocalCluster of ``workers`` processes, one thread each."""
    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            scheduler_port=0,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """Two worker processes, one thread each: a notebook's run moves between processes."""
    with local_dask(2) as client:
        yield client


def test_a_batch_on_dask_workers_equals_a_local_run(dask_client: Any, tmp_path: Path) -> None:
    paths = [
        write_notebook(tmp_path / "a.ipynb", "print('a')", "1 + 1"),
        write_notebook(tmp_path / "b.ipynb", "import os; print(os.getcwd())", "'b' * 3"),
        write_notebook(tmp_path / "c.ipynb", "from IPython.display import HTML; HTML('<b>c</b>')"),
    ]
    local = notebook.execute_many(paths)
    seen: list[int] = []
    remote = notebook.execute_many(
        paths,
        executor=dask_client.get_executor(),
        jobs=2,
        on_notebook_done=lambda index, run: seen.append(index),
    )
    assert sorted(seen) == [0, 1, 2]
    workers = set(dask_client.scheduler_info()["workers"])
    for here, there in zip(local, remote, strict=True):
        assert here.ok and there.ok, (here.error, there.error)
        assert normalised(there.notebook) == normalised(here.notebook)
        assert there.worker is not None and there.worker.split(" ")[0] in workers
        assert here.worker is None
    # Each ran in its notebook's folder, on the worker too.
    assert remote[1].notebook is not None
    assert remote[1].notebook.cells[0].outputs[0]["text"] == f"{tmp_path}\n"


def test_a_notebook_s_kernel_on_a_worker_gets_its_exit_as_a_local_one_does(
    dask_client: Any, tmp_path: Path
) -> None:
    """The kernel of a finished notebook is asked to shut down, on a worker as in local
    lanes (and nbclient): its atexit handlers run and its open files are flushed. Killed
    by a signal, as it was, both were lost."""
    paths = [
        write_notebook(
            tmp_path / f"{name}.ipynb",
            f"left_open = open('{name}.buffered', 'w'); left_open.write('flushed at exit')",
            f"import atexit\natexit.register(lambda: open('{name}.atexit', 'w').close())",
        )
        for name in ("one", "two", "three")
    ]
    runs = notebook.execute_many(paths, executor=dask_client.get_executor(), jobs=2)
    assert all(run.ok for run in runs), [run.error for run in runs]
    for name in ("one", "two", "three"):
        assert (tmp_path / f"{name}.buffered").read_text() == "flushed at exit"
        assert (tmp_path / f"{name}.atexit").exists()


def test_a_failing_notebook_on_a_worker_names_its_cell_and_traceback(
    dask_client: Any, tmp_path: Path
) -> None:
    paths = [
        write_notebook(tmp_path / "ok.ipynb", "1"),
        write_notebook(tmp_path / "fails.ipynb", "x = 1", "1 / 0", "print('never')"),
        write_notebook(tmp_path / "nokernel.ipynb", "1", kernel="no-such-kernel-here"),
    ]
    runs = notebook.execute_many(paths, executor=dask_client.get_executor(), jobs=2)
    assert runs[0].ok
    error = runs[1].error
    assert isinstance(error, CellExecutionError)
    assert error.cell_index == 1 and error.ename == "ZeroDivisionError"
    assert any("ZeroDivisionError" in line for line in error.traceback)
    assert str(error).startswith("cell In [2] (index 1) raised ZeroDivisionError")
    assert f"(on worker {runs[1].worker})" in str(error)
    assert runs[1].notebook is not None
    assert runs[1].notebook.cells[2].outputs == []  # the run stopped at the failing cell
    missing = runs[2].error
    assert isinstance(missing, NoSuchKernel)
    assert f"no kernel named 'no-such-kernel-here' on worker {runs[2].worker}" in str(missing)
    assert "python3" in missing.available


def test_any_executor_works_a_process_pool(tmp_path: Path) -> None:
    paths = [write_notebook(tmp_path / f"n{i}.ipynb", f"print({i} * 7)") for i in range(2)]
    spawn = multiprocessing.get_context("spawn")  # this process has threads: no fork
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        runs = notebook.execute_many(paths, executor=pool, jobs=2)
    for i, run in enumerate(runs):
        assert run.ok, run.error
        assert run.notebook is not None
        assert run.notebook.cells[0].outputs[0]["text"] == f"{i * 7}\n"
        assert run.worker is not None and str(os.getpid()) not in run.worker


def test_errors_pickle_with_their_message_and_attributes() -> None:
    died = KernelDied("kernel python3 exited", exit_code=3, stderr="boom")
    again = pickle.loads(pickle.dumps(died))
    assert type(again) is KernelDied and str(again) == str(died)
    assert (again.exit_code, again.stderr) == (3, "boom")
    cell = pickle.loads(pickle.dumps(CellExecutionError(4, "E", "v", ["tb"], 7)))
    assert (cell.cell_index, cell.execution_count, cell.traceback) == (4, 7, ["tb"])
    assert str(cell) == "cell In [7] (index 4) raised E: v"


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import logging, signal, sys, psutil, distributed
    from kernelwire import notebook

    def kernels_here():
        return sum(
            "ipykernel" in " ".join(child.cmdline())
            for child in psutil.Process().children(recursive=True)
        )

    if __name__ == "__main__":
        # As in a terminal: a child of a non-interactive shell may start with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
            scheduler_port=0, silence_logs=logging.ERROR,
        ) as cluster, distributed.Client(cluster) as client:
            try:
                notebook.execute_many(sys.argv[1:], executor=client.get_executor())
            except KeyboardInterrupt:
                counts = client.run(kernels_here)
                print("KERNELS", sum(counts.values()), flush=True)
    """
)


def test_ctrl_c_during_a_dask_batch_leaves_no_kernel_on_the_workers(tmp_path: Path) -> None:
    started = tmp_path / "started"
    slow = write_notebook(
        tmp_path / "slow.ipynb",
        f"open({str(started)!r}, 'w').close()\nimport time; time.sleep(120)",
    )
    never = write_notebook(tmp_path / "never.ipynb", f"open({str(tmp_path / 'ran')!r}, 'w')")
    script = tmp_path / "batch.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(slow), str(never)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        give_up = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < give_up, "the slow notebook never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "KERNELS 0" in output, output
    assert not (tmp_path / "ran").exists(), "a notebook not yet begun was not cancelled"


def test_the_cli_runs_notebooks_on_a_dask_scheduler(dask_client: Any, tmp_path: Path) -> None:
    paths = [
        write_notebook(tmp_path / "one.ipynb", "print('one')"),
        write_notebook(tmp_path / "two.ipynb", "1 / 0"),
    ]
    address = dask_client.scheduler.address
    kernelwire_cli = [sys.executable, "-m", "kernelwire"]
    done = subprocess.run(
        [sys.executable, "-m", "kernelwire", "notebook", "run", "--dask", address, "-j", "2"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stderr  # a cell failed
    one = nbformat.read(tmp_path / "one.executed.ipynb", as_version=4)
    assert one.cells[0].outputs[0]["text"] == "one\n"
    assert "two.ipynb: cell In [1] (index 0) raised ZeroDivisionError" in done.stderr
    assert "(on worker tcp://" in done.stderr
    unreachable = subprocess.run(
        [*kernelwire_cli, "notebook", "run", "--dask", "tcp://127.0.0.1:9", str(paths[0])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreachable.returncode == 2
    assert "--dask tcp://127.0.0.1:9: cannot reach the scheduler" in unreachable.stderr


def test_the_cli_progress_bar_marks_each_notebook_done_on_dask(
    dask_client: Any, tmp_path: Path
) -> None:
    # Two at a time on two workers: the second notebook starts before the first ends,
    # so "the current bar" of the calling thread is not the first notebook's any more.
    paths = [write_notebook(tmp_path / f"bar{i}.ipynb", f"{i}") for i in range(2)]
    done = subprocess.run(
        [sys.executable, "-m", "kernelwire", "notebook", "run", "--dask"]
        + [dask_client.scheduler.address, "-j", "2"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TTY_COMPATIBLE": "1", "TERM": "xterm", "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    # The bars' last frame (its last two lines with a bar) names each notebook with its
    # outcome, whichever ended first.
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)
    bars = [line.split("━")[0].strip() for line in plain.splitlines() if "━" in line]
    assert sorted(bars[-2:]) == ["bar0.ipynb: done", "bar1.ipynb: done"], bars[-6:]


def kernels_here() -> int:
    """Run on a worker: its kernels (ipykernel processes among its descendants)."""
    import psutil

    return sum(
        "ipykernel" in " ".join(child.cmdline())
        for child in psutil.Process().children(recursive=True)
    )


def test_a_worker_starts_the_next_kernel_while_a_notebook_runs(tmp_path: Path) -> None:
    # Times as seconds since boot, from /proc: the same clock for both kernels, to the
    # tick (psutil's create_time adds a boot time rounded to the second).
    first = write_notebook(
        tmp_path / "first.ipynb",
        "import time; time.sleep(3); float(open('/proc/uptime').read().split()[0])",
    )
    second = write_notebook(
        tmp_path / "second.ipynb",
        "import os\nstat = open('/proc/self/stat').read().rsplit(')', 1)[1].split()\n"
        "int(stat[19]) / os.sysconf('SC_CLK_TCK')  # this process's start",
    )
    third = write_notebook(tmp_path / "third.ipynb", "import os; os.getpid()")
    with local_dask(1) as client:  # one worker: every notebook runs on it, in turn
        runs = notebook.execute_many([first, second, third], executor=client.get_executor())
        left = client.run(kernels_here)
    assert all(run.ok for run in runs), [run.error for run in runs]
    values = [run.notebook.cells[0].outputs[0]["data"]["text/plain"] for run in runs]  # type: ignore[union-attr]
    first_ended, second_kernel_created = float(values[0]), float(values[1])
    # The second notebook's kernel was started while the first one ran.
    assert second_kernel_created < first_ended
    assert sum(left.values()) == 0, left


def test_kernels_started_ahead_and_not_used_are_shut_down_at_the_end(
    dask_client: Any, tmp_path: Path
) -> None:
    paths = [write_notebook(tmp_path / f"k{i}.ipynb", "import os; os.getpid()") for i in range(4)]
    runs = notebook.execute_many(paths, executor=dask_client.get_executor(), jobs=2)
    assert all(run.ok for run in runs), [run.error for run in runs]
    # a fresh kernel for every notebook, never one another notebook used
    pids = {run.notebook.cells[0].outputs[0]["data"]["text/plain"] for run in runs}  # type: ignore[union-attr]
    assert len(pids) == 4
    assert sum(dask_client.run(kernels_here).values()) == 0


def test_no_kernel_is_started_ahead_for_nobody_at_the_end(
    dask_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two workers, two at a time, four notebooks: the first two start a kernel ahead
    # each, which the last two take; the last two have no notebook after them on their
    # worker, so they start none (a kernel started for nobody costs a start's CPU).
    paths = [write_notebook(tmp_path / f"u{i}.ipynb", "1") for i in range(4)]
    with caplog.at_level(logging.DEBUG, logger="kernelwire.notebook"):
        runs = notebook.execute_many(paths, executor=dask_client.get_executor(), jobs=2)
    assert all(run.ok for run in runs), [run.error for run in runs]
    # logged as ("... by worker: %s", {worker: count}); logging keeps a lone mapping
    # as the record's args
    [unused] = [
        record.args
        for record in caplog.records
        if record.getMessage().startswith("kernels started ahead and not used")
    ]
    assert isinstance(unused, dict), unused
    assert set(unused) == set(dask_client.scheduler_info()["workers"])
    assert sum(unused.values()) == 0, unused


def test_a_task_queued_behind_a_stopped_notebook_does_not_begin(tmp_path: Path) -> None:
    # What a worker does with a task queued behind a notebook that the batch's stop
    # shut down (the watcher noted the stop on the worker): no kernel, no cell run.
    from kernelwire.errors import ExecutorError
    from kernelwire.notebook_executor import NotebookTask, run_notebook_task, warm_kernels

    marker = tmp_path / "ran"
    path = write_notebook(tmp_path / "queued.ipynb", f"open({str(marker)!r}, 'w').close()")
    batch = f"stopped-{os.getpid()}-{time.monotonic_ns()}"
    warm_kernels.stop(batch)
    task = NotebookTask(
        dict(nbformat.read(path, as_version=4)),
        None,
        str(tmp_path),
        None,
        False,
        None,
        None,
        None,
        str(path),
        "skip-execution",
        60.0,
        batch=batch,
        ahead=True,
    )
    result = run_notebook_task(task)
    assert isinstance(result.error, ExecutorError)
    assert "the batch was stopped before it began" in str(result.error)
    assert str(path) in str(result.error)
    assert not marker.exists()
    assert result.notebook["cells"][0]["outputs"] == []
    never = lambda *key: pytest.fail("a kernel was started ahead for a stopped batch")  # noqa: E731
    assert not warm_kernels.start_ahead(batch, ("python3", None, None, False, 60.0), never)


def hook_order(client: Any, paths: list[Path], jobs: int) -> list[str]:
    """The order in which a batch on ``client`` calls its notebook hooks."""
    calls: list[str] = []
    runs = notebook.execute_many(
        paths,
        executor=client.get_executor(),
        jobs=jobs,
        on_notebook_start=lambda index, run: calls.append(f"start {index}"),
        on_notebook_done=lambda index, run: calls.append(f"done {index}"),
    )
    assert all(run.ok for run in runs), [run.error for run in runs]
    return calls


def test_a_worker_gets_its_next_notebook_before_the_running_one_ends(tmp_path: Path) -> None:
    # One worker thread, one notebook at a time: the second notebook is sent while the
    # first runs (queued behind it on the worker), so the worker does not wait for a
    # round trip through the caller between notebooks; still one at a time.
    paths = [
        write_notebook(tmp_path / f"q{i}.ipynb", "import time; time.sleep(1)") for i in range(3)
    ]
    with local_dask(1) as client:
        calls = hook_order(client, paths, jobs=1)
    assert calls == ["start 0", "start 1", "done 0", "start 2", "done 1", "done 2"]


def test_no_task_is_queued_ahead_when_the_cluster_could_run_it_beyond_jobs(
    dask_client: Any, tmp_path: Path
) -> None:
    # Two worker threads, jobs=1: a second task sent early would run at once beside the
    # first, so none is: one notebook at a time, as asked.
    paths = [write_notebook(tmp_path / f"j{i}.ipynb", "1") for i in range(3)]
    calls = hook_order(dask_client, paths, jobs=1)
    assert calls == ["start 0", "done 0", "start 1", "done 1", "start 2", "done 2"]
