"""Kernels forked from a warm template (ForkServer, fork=True) behave as spawned ones."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import kernelwire
from kernelwire import ExecutionResult, ForkServer, KernelDied, KernelPool, start_kernel
from kernelwire.lifecycle.forkserver import ForkedProcess

SNIPPETS = [
    "print('hello'); import sys; print('oops', file=sys.stderr)",
    "6 * 7",
    "from IPython.display import HTML, display; display(HTML('<b>x</b>'), display_id='d1')",
    "1 / 0",
    "name = input('name? '); print('hi', name)",
    "import warnings; warnings.warn('careful')",
    "def f():\n    return [i * i for i in range(5)]\nf()",
]


def _seen(result: ExecutionResult) -> tuple[str, int | None, str]:
    """What a run showed, the kernel's pid (in warnings' file names) aside."""
    outputs = json.dumps(result.outputs, sort_keys=True)
    return result.status, result.execution_count, re.sub(r"ipykernel_\d+", "ipykernel_PID", outputs)


def _answer(prompt: str, password: bool) -> str:
    return f"Ada<{prompt}>"


def _parent_of(pid: int) -> int:
    return psutil.Process(pid).ppid()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    """A template for the module's tests; its kernels are stopped with it."""
    with ForkServer("python3") as server:
        assert server.pid is not None and server.unavailable is None, server.unavailable
        yield server
    assert server.pid is not None
    assert _gone(server.pid), "the template must exit when the server closes"


def test_forked_kernel_shows_what_a_spawned_one_shows(forks: ForkServer) -> None:
    with start_kernel("python3") as spawned, forks.start_kernel() as forked:
        assert isinstance(forked.proc, ForkedProcess)
        assert _parent_of(forked.pid) == forks.pid  # really forked, not a fallback
        assert os.getpgid(forked.pid) == forked.pid  # a process group of its own
        for code in SNIPPETS:
            want = spawned.run(code, stdin=_answer)
            got = forked.run(code, stdin=_answer)
            assert _seen(got) == _seen(want), code
        assert forked.run("1 / 0").error is not None
        assert forked.run(SNIPPETS[4], stdin=_answer).stdout == "hi Ada<name? >\n"


def test_matplotlib_inline_figure_as_in_a_spawned_kernel(forks: ForkServer) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("matplotlib_inline")
    code = "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()"
    with start_kernel("python3") as spawned, forks.start_kernel() as forked:
        kinds = [
            [sorted(o.get("data", {})) for o in k.run(code).outputs] for k in (spawned, forked)
        ]
    assert kinds[0] == kinds[1]
    assert any("image/png" in kind for kind in kinds[1])


def test_interrupt_stops_a_sleeping_forked_kernel(forks: ForkServer) -> None:
    with forks.start_kernel() as kernel:
        client = kernel.client()
        pending = client.submit(
            kernelwire.requests.execute("print('asleep', flush=True); import time; time.sleep(30)")
        )
        for msg in pending.iopub(timeout=30):
            if msg["msg_type"] == "stream":
                break
        kernel.interrupt()
        reply = pending.reply(timeout=20)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert kernel.is_alive()
        assert kernel.run("1 + 1").text == "2"


def test_restart_is_a_fresh_fork(forks: ForkServer) -> None:
    with forks.start_kernel() as kernel:
        client = kernel.client()
        kernel.run("x = 42")
        first = kernel.pid
        kernel.restart()
        assert kernel.pid != first
        assert _gone(first)
        assert isinstance(kernel.proc, ForkedProcess)
        assert _parent_of(kernel.pid) == forks.pid
        reply = client.execute("x", reply=True, timeout=30)
        assert reply["content"]["ename"] == "NameError"  # a new namespace
        assert kernel.run("x = 1; x").text == "1"


def test_kill_9_of_a_forked_kernel_is_kernel_died(forks: ForkServer) -> None:
    with forks.start_kernel() as kernel:
        client = kernel.client()
        pending = client.submit(kernelwire.requests.execute("import time; time.sleep(100)"))
        os.kill(kernel.pid, signal.SIGKILL)
        with pytest.raises(KernelDied) as excinfo:
            for _ in pending.iopub(timeout=60):
                pass
        # Found by the process check (the exit status the template reported), not by
        # missed heartbeats: the same path, and time, as a spawned kernel's death.
        assert excinfo.value.exit_code == -signal.SIGKILL
        assert kernel.exit_code == -signal.SIGKILL
        assert not kernel.is_alive()


def test_cwd_env_log_and_no_inherited_descriptors(forks: ForkServer, tmp_path: Path) -> None:
    assert forks.pid is not None
    with forks.start_kernel(cwd=str(tmp_path), env={"KW_FORK_TEST": "applied"}) as kernel:
        code = "import os; print(os.getcwd()); print(os.environ['KW_FORK_TEST'])"
        assert kernel.run(code).stdout.splitlines() == [str(tmp_path), "applied"]
        kernel.run("import os; os.write(2, b'to-the-log\\n')")
        assert "to-the-log" in kernel.stderr_tail()
        ours = _descriptors(kernel.pid)
        template = _descriptors(forks.pid) - {os.devnull}
        assert ours and not ours & template, ours & template
        # ipykernel watches its parent: the template, which lives as long as we do.
        assert kernel.run("os.environ['JPY_PARENT_PID']").text == repr(str(forks.pid))


def _descriptors(pid: int) -> set[str]:
    targets = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            targets.add(os.readlink(f"/proc/{pid}/fd/{name}"))
    return targets


def test_two_forked_kernels_draw_different_random_numbers(no_leaks: None) -> None:
    numpy = pytest.importorskip("numpy")
    del numpy
    with (
        # The prelude draws a number: the template's generator is seeded and in use.
        ForkServer(
            "python3", preload=["numpy"], prelude="import numpy as np; np.random.rand()"
        ) as server,
        server.start_kernel() as one,
        server.start_kernel() as two,
    ):
        code = "import random; print(random.random(), np.random.rand())"
        first = one.run(code).stdout.split()
        second = two.run(code).stdout.split()
        assert len(first) == len(second) == 2
        assert first[0] != second[0]  # random
        assert first[1] != second[1]  # numpy's global generator
        assert {_parent_of(one.pid), _parent_of(two.pid)} == {server.pid}


def test_a_preload_that_starts_a_thread_falls_back_to_spawning(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_leaks: None,
) -> None:
    module = f"kw_threaded_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(600,), daemon=True, name='busy').start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    caplog.set_level(logging.WARNING, logger="kernelwire.forkserver")
    with ForkServer("python3", preload=[module]) as server:
        assert server.unavailable is not None and "threads" in server.unavailable
        with server.start_kernel() as kernel:
            assert not isinstance(kernel.proc, ForkedProcess)
            assert _parent_of(kernel.pid) == os.getpid()  # spawned by us
            assert kernel.run("1 + 1").text == "2"
    reasons = [r.getMessage() for r in caplog.records if r.name == "kernelwire.forkserver"]
    assert any("spawned, not forked" in r and "busy" in r for r in reasons), reasons


def test_a_spec_that_is_not_ipykernel_is_spawned(
    caplog: pytest.LogCaptureFixture, no_leaks: None
) -> None:
    pytest.importorskip("xpython_launcher", reason="xeus-python is installed by the test extras")
    caplog.set_level(logging.WARNING, logger="kernelwire.forkserver")
    with start_kernel("xpython", fork=True) as kernel:
        assert not isinstance(kernel.proc, ForkedProcess)
        assert kernel.run("1 + 1").text == "2"
    assert any("ipykernel_launcher" in r.getMessage() for r in caplog.records)


def test_without_fork_kernels_are_spawned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_leaks: None
) -> None:
    monkeypatch.delattr(os, "fork")
    caplog.set_level(logging.WARNING, logger="kernelwire.forkserver")
    with ForkServer("python3") as server:
        assert server.pid is None  # no template at all
        with server.start_kernel() as kernel:
            assert not isinstance(kernel.proc, ForkedProcess)
            assert kernel.run("1 + 1").text == "2"
    assert any("no fork()" in r.getMessage() for r in caplog.records)


def test_another_interpreter_is_spawned(
    forks: ForkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    python = tmp_path / "python-elsewhere"
    python.symlink_to(sys.executable)
    spec = dataclasses.replace(forks.spec, argv=(str(python), *forks.spec.argv[1:]))
    caplog.set_level(logging.WARNING, logger="kernelwire.forkserver")
    with start_kernel(spec, fork=forks) as kernel:
        assert not isinstance(kernel.proc, ForkedProcess)
        assert kernel.run("1 + 1").text == "2"
    assert any("python-elsewhere" in r.getMessage() for r in caplog.records)


def test_pool_refills_by_forking() -> None:
    with KernelPool("python3", size=1, fork=True) as pool:
        kernel = pool.acquire()
        assert isinstance(kernel.proc, ForkedProcess)
        template = _parent_of(kernel.pid)
        assert template != os.getpid()
        kernel.run("y = 1")
        pool.release(kernel)
        again = pool.acquire()
        assert isinstance(again.proc, ForkedProcess)
        assert _parent_of(again.pid) == template
        assert again.run("'y' in dir()").text == "False"
        pool.release(again, restart=False)


def test_notebook_execute_with_fork(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import os; os.getppid()"),
        nbformat.v4.new_code_cell("print(os.getcwd())"),
    ]
    (tmp_path / "fork.ipynb").write_text(nbformat.writes(nb))
    [run] = kernelwire.notebook.execute_many([tmp_path / "fork.ipynb"], fork=True)
    assert run.error is None and run.notebook is not None
    parent = int(run.notebook.cells[0].outputs[0]["data"]["text/plain"])
    assert parent != os.getpid()  # the template's child, not ours
    assert run.notebook.cells[1].outputs[0]["text"] == f"{tmp_path}\n"


def test_cli_run_fork() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "kernelwire", "run", "--fork", "-c", "import os; os.getppid()"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 0, err
    assert int(out.strip()) not in (cli.pid, os.getpid())  # forked from the CLI's template


OWNER = textwrap.dedent(
    """
    import json, sys, time
    import kernelwire
    server = kernelwire.ForkServer("python3").start()
    kernel = server.start_kernel()
    shared = kernelwire.start_kernel("python3", fork=True)
    print(json.dumps([server.pid, kernel.pid, shared.pid]), flush=True)
    if sys.argv[1] == "hang":
        time.sleep(600)
    else:
        sys.stdin.readline()  # the test looks at the processes first, then lets it exit
    """
)


@pytest.mark.parametrize("end", ["sigkill", "exit"])
def test_the_owner_ending_leaves_no_template_and_no_kernel(tmp_path: Path, end: str) -> None:
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    owner = subprocess.Popen(
        [sys.executable, str(script), "hang" if end == "sigkill" else "exit"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line, owner.communicate(timeout=60)
        pids = json.loads(line)
        server_pid, kernel_pid, shared_kernel_pid = pids
        shared_template = _parent_of(shared_kernel_pid)
        pids.append(shared_template)
        assert {_parent_of(kernel_pid)} == {server_pid}
        assert shared_template not in (server_pid, owner.pid)
        if end == "sigkill":
            owner.kill()
        owner.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: _status(pid) for pid in pids if not _gone(pid)}
        assert not left, f"left behind after the owner's {end}: {left}"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.communicate()


def _status(pid: int) -> Any:
    try:
        process = psutil.Process(pid)
        return (process.status(), process.cmdline()[:3])
    except psutil.NoSuchProcess:
        return "gone"
