"""Kernel lifecycle on real kernels: ipykernel, xeus-python and bash_kernel."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import kernelwire
from kernelwire import (
    KernelDied,
    KernelPool,
    KernelSet,
    KernelTimeout,
    NoSuchKernel,
    list_kernel_specs,
    start_kernel,
    start_kernel_async,
)
from kernelwire.protocol.message import Message

pytestmark = pytest.mark.usefixtures("no_leaks")

# Per kernel: code that defines x, code that prints x, and code that runs for long.
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "python3": ("x = 41 + 1", "print(x)", "import time; time.sleep(100)"),
    "xpython": ("x = 41 + 1", "print(x)", "import time; time.sleep(100)"),
    "bash": ("x=42", "echo $x", "sleep 100"),
}


def stream_text(client: kernelwire.BlockingKernelClient, code: str) -> tuple[str, Message]:
    outputs: list[Message] = []
    reply = client.execute_interactive(code, output_hook=outputs.append, timeout=60)
    return "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream"), reply


@pytest.fixture(params=list(LANGUAGES))
def kernel_name(request: pytest.FixtureRequest) -> str:
    if request.param == "bash":
        request.getfixturevalue("bash_kernel_installed")
    if request.param == "xpython":
        pytest.importorskip("xpython_launcher")
    return str(request.param)


def test_specs_are_listed_and_unknown_names_say_what_exists() -> None:
    specs = list_kernel_specs()
    assert "python3" in specs
    spec = specs["python3"]
    assert spec.language == "python" and "{connection_file}" in " ".join(spec.argv)
    assert spec.interrupt_mode == "signal"
    with pytest.raises(NoSuchKernel) as excinfo:
        start_kernel("no-such-kernel")
    assert "python3" in str(excinfo.value) and "no-such-kernel" in str(excinfo.value)


def test_start_run_restart_shutdown(kernel_name: str) -> None:
    define, show, _ = LANGUAGES[kernel_name]
    with start_kernel(kernel_name) as kernel:
        connection_file = kernel.connection_file
        assert connection_file and Path(connection_file).exists()
        assert kernel.is_alive() and kernel.pid > 0
        client = kernel.client()
        stream_text(client, define)
        text, reply = stream_text(client, show)
        assert reply["content"]["status"] == "ok"
        assert text.strip() == "42"
        old_pid = kernel.pid
        kernel.restart()
        assert kernel.pid != old_pid and kernel.is_alive()
        text, _ = stream_text(client, show)  # same client, new process: x is gone
        assert "42" not in text
    assert not kernel.is_alive()
    assert not Path(connection_file).exists()


def test_interrupt_ends_a_long_request(kernel_name: str) -> None:
    _, _, long_running = LANGUAGES[kernel_name]
    with start_kernel(kernel_name) as kernel:
        client = kernel.client()
        pending = client.submit(kernelwire.requests.execute(long_running))
        time.sleep(0.5)
        started = time.monotonic()
        kernel.interrupt()
        if kernel_name == "xpython":
            # xeus exits on SIGINT (upstream jupyter-xeus/xeus#272): we must say so, fast.
            with pytest.raises(KernelDied):
                pending.reply(timeout=10)
            assert time.monotonic() - started < 2.0
            return
        reply = pending.reply(timeout=10)
        assert time.monotonic() - started < 2.0
        if kernel_name == "python3":
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "KeyboardInterrupt"
        else:
            assert reply["content"]["status"] in ("abort", "error")
        assert kernel.is_alive()


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_kill_9_mid_execution_raises_kernel_died(kind: str) -> None:
    with start_kernel("python3") as kernel:
        if kind == "blocking":
            client = kernel.client()
            pending = client.submit(kernelwire.requests.execute("import time; time.sleep(100)"))
            time.sleep(0.3)
            os.kill(kernel.pid, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(KernelDied) as excinfo:
                for _ in pending.iopub(timeout=30):
                    pass
            elapsed = time.monotonic() - started
        else:

            async def main() -> tuple[float, KernelDied]:
                client = kernel.async_client()
                await client.wait_for_ready(30)
                pending = client.submit(kernelwire.requests.execute("import time; time.sleep(100)"))
                await asyncio.sleep(0.3)
                os.kill(kernel.pid, signal.SIGKILL)
                started = time.monotonic()
                try:
                    await pending.reply(timeout=30)
                except KernelDied as exc:
                    return time.monotonic() - started, exc
                finally:
                    client.stop_channels()
                raise AssertionError("no KernelDied")

            elapsed, died = asyncio.run(main())
            excinfo = pytest.ExceptionInfo.from_exception(died)  # type: ignore[assignment]
        assert elapsed < 2.0
        assert excinfo.value.exit_code == -signal.SIGKILL


def test_sixteen_concurrent_starts_never_collide() -> None:
    kernels: list[kernelwire.Kernel] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start() -> None:
        try:
            kernel = start_kernel("python3", startup_timeout=120)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            kernels.append(kernel)

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    try:
        assert not errors, errors
        assert len(kernels) == 16
        ports = [
            kernel.connection_info.port(ch)
            for kernel in kernels
            for ch in ("shell", "iopub", "stdin", "control", "hb")
        ]  # type: ignore[union-attr]
        assert len(set(ports)) == len(ports)
        for kernel in kernels[:4]:
            with kernel.client() as client:
                assert client.execute("1", reply=True, timeout=60)["content"]["status"] == "ok"
    finally:
        files = [k.connection_file for k in kernels]
        for kernel in kernels:
            kernel.shutdown(now=True)
    assert not any(Path(f).exists() for f in files if f)


def test_curve_encryption_refuses_clients_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with start_kernel("python3", encrypt=True) as kernel:
        info = kernel.connection_info
        assert info is not None and info.curve_publickey
        assert (
            kernel.client().kernel_info(reply=True, timeout=30)["msg_type"] == "kernel_info_reply"
        )
        plain = info.to_dict()
        del plain["curve_publickey"], plain["curve_secretkey"]
        with kernelwire.BlockingKernelClient(connection_info=plain) as intruder:
            # Once the kernel has refused the handshake, ZeroMQ has no peer to send to:
            # the request must wait in our queue and time out, not block the send.
            time.sleep(0.5)
            started = time.monotonic()
            with caplog.at_level("WARNING", logger="kernelwire"), pytest.raises(KernelTimeout):
                intruder.kernel_info(reply=True, timeout=1.0)
            assert time.monotonic() - started < 5
            # The refusal is said, and is not taken for a dead kernel.
            assert "refused the connection" in caplog.text
            assert intruder.engine.router.death is None

        async def refused() -> None:
            async with kernelwire.AsyncKernelClient(connection_info=plain) as intruder:
                await asyncio.sleep(0.5)
                with pytest.raises(KernelTimeout):
                    await intruder.kernel_info(reply=True, timeout=1.0)

        asyncio.run(asyncio.wait_for(refused(), 10))


def test_ipc_transport() -> None:
    with start_kernel("python3", transport="ipc") as kernel:
        assert kernel.connection_info is not None and kernel.connection_info.transport == "ipc"
        text, _ = stream_text(kernel.client(), "print('over ipc')")
        assert text == "over ipc\n"
        sockets = [kernel.connection_info.url(ch)[len("ipc://") :] for ch in ("shell", "iopub")]
    assert not any(Path(s).exists() for s in sockets)
    assert not Path(sockets[0]).parent.exists()


def test_auto_restart_reports_events() -> None:
    events: list[Any] = []
    with start_kernel(
        "python3", auto_restart=True, restart_limit=1, on_event=events.append
    ) as kernel:
        old_pid = kernel.pid
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not any(e.kind == "restarted" for e in events) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.kind for e in events][:3] == ["started", "died", "restarted"]
        assert kernel.pid != old_pid
        text, _ = stream_text(kernel.client(), "print('back')")
        assert text == "back\n"


def test_kernel_set() -> None:
    with KernelSet() as kernels:
        first, second = kernels.start("python3"), kernels.start("python3")
        assert set(kernels.ids()) == {first, second}
        assert kernels[first].pid != kernels[second].pid
        kernels.shutdown(first)
        assert kernels.ids() == [second]
        remaining = kernels[second]
    assert not remaining.is_alive()


def test_async_kernel_and_kernel_set() -> None:
    async def main() -> None:
        async with await start_kernel_async("python3") as kernel:
            client = kernel.async_client()
            await client.wait_for_ready(30)
            reply = await client.execute("1 + 1", reply=True, timeout=30)
            assert reply["content"]["status"] == "ok"
            await kernel.restart()
            assert (await client.execute("1", reply=True, timeout=30))["content"]["status"] == "ok"
            client.stop_channels()
        assert not kernel.is_alive()
        async with kernelwire.AsyncKernelSet() as kernels:
            kid = await kernels.start("python3")
            assert kernels[kid].is_alive()

    asyncio.run(main())


def test_pool_hands_out_ready_kernels_to_one_holder_each() -> None:
    with KernelPool("python3", size=2) as pool:
        pool.wait_ready(120)
        started = time.monotonic()
        first = pool.acquire()
        assert time.monotonic() - started < 0.5
        second = pool.acquire()
        assert first.kernel_id != second.kernel_id
        client = first.client()
        assert client.execute("y = 5", reply=True, timeout=30)["content"]["status"] == "ok"
        client.stop_channels()
        pool.release(first)
        with pytest.raises(kernelwire.KernelwireError):
            pool.release(first)  # not held any more
        third = pool.acquire(timeout=120)
        assert third.kernel_id != second.kernel_id
        if third.kernel_id == first.kernel_id:  # reused: restarted, namespace gone
            reply = third.client().execute("y", reply=True, timeout=30)
            assert reply["content"]["status"] == "error"
        held = [second, third]
    assert not any(k.is_alive() for k in held)


def test_a_released_kernel_stops_in_the_background_and_close_waits_for_it() -> None:
    """release() never makes the holder wait for a shutdown (ipykernel sometimes takes
    seconds to exit); close() waits for such background work, so nothing outlives it."""
    pool = KernelPool("python3", size=1)
    try:
        pool.wait_ready(120)
        kernel = pool.acquire()  # the pool starts a replacement: this one is not reused
        may_stop = threading.Event()
        stopping = threading.Event()
        shutdown = kernel.shutdown

        def slow_shutdown(*args: object, **kwargs: object) -> None:
            stopping.set()
            may_stop.wait(60)
            shutdown()

        kernel.shutdown = slow_shutdown  # type: ignore[method-assign]
        releasing = threading.Thread(target=pool.release, args=(kernel,))
        releasing.start()
        releasing.join(30)
        assert not releasing.is_alive()  # returned while the shutdown is still held up
        assert stopping.wait(30)
        closing = threading.Thread(target=pool.close)
        closing.start()
        closing.join(0.5)
        assert closing.is_alive()  # close() waits for the background shutdown
        may_stop.set()
        closing.join(60)
        assert not closing.is_alive()
        assert not kernel.is_alive()
    finally:
        may_stop.set()
        pool.close()


def test_a_kernel_that_does_not_exit_after_its_shutdown_reply_is_terminated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A kernel that answers shutdown_request but does not exit (here an atexit handler
    that sleeps; ipykernel 7 sometimes hangs there on its own) is terminated after the
    timeout, with a warning that says so."""
    kernel = start_kernel("python3")
    try:
        kernel.run("import atexit, time\natexit.register(time.sleep, 120)", timeout=60)
        pid = kernel.pid
        with caplog.at_level(logging.WARNING, logger="kernelwire.kernel"):
            kernel.shutdown(timeout=1.0)
        assert not kernel.is_alive()
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
        assert "answered shutdown_request but had not exited 1 s later" in caplog.text
    finally:
        kernel.shutdown(now=True)


@pytest.mark.parametrize("kernel_name", ["python3", "xpython"])
def test_a_kernel_busy_in_a_loop_is_interrupted_and_shut_down_gracefully(
    kernel_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Shutdown interrupts first, as jupyter_client does: a kernel busy in a loop
    answered shutdown_request but could not exit, and was terminated after the whole
    timeout (a warning, exit by SIGTERM)."""
    kernel = start_kernel(kernel_name)
    try:
        client = kernel.client()
        client.submit(kernelwire.requests.execute("while True: pass"))
        _wait_busy(client)
        with caplog.at_level(logging.INFO, logger="kernelwire.kernel"):
            kernel.shutdown(timeout=30)
        assert not kernel.is_alive()
        assert "terminating" not in caplog.text
        assert kernel.exit_code == 0, kernel.exit_code
    finally:
        kernel.shutdown(now=True)


def _wait_busy(client: kernelwire.BlockingKernelClient) -> None:
    """Until the kernel says it runs the request just sent (its ``execute_input``)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.0))
        if msg["msg_type"] == "execute_input":
            return
    raise AssertionError("the kernel never began the request")


def test_a_kernel_stuck_after_closing_its_connections_is_not_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A kernel that closed its connections after shutdown_request but does not exit (as
    ipykernel 7 sometimes hangs, joining its control thread) gets CLOSING_GRACE, not the
    whole timeout. Here a real ipykernel sleeps in an atexit handler registered before
    its own, so it runs after the kernel has closed its sockets."""
    launch = (
        "import atexit, time\n"
        "atexit.register(time.sleep, 120)\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n"
    )
    spec = kernelwire.KernelSpec(
        name="stuck-on-exit",
        argv=(sys.executable, "-c", launch, "-f", "{connection_file}"),
        display_name="Stuck on exit",
        language="python",
        resource_dir=str(tmp_path),
    )
    kernel = start_kernel(spec)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="kernelwire.kernel"):
            kernel.shutdown(timeout=60)
        assert time.monotonic() - started < 20  # not the 60 s timeout
        assert not kernel.is_alive()
        assert "closed its connections after shutdown_request but had not exited 1 s" in (
            caplog.text
        )
    finally:
        kernel.shutdown(now=True)


def test_slow_atexit_handlers_of_the_user_still_finish(tmp_path: Path) -> None:
    """The grace starts only once the kernel closes its connections, which ipykernel
    does after the user's atexit handlers: a slow one is not cut short."""
    done = tmp_path / "atexit-done"
    with start_kernel("python3") as kernel:
        handler = (
            "import atexit, pathlib, time\n"
            "def slow():\n"
            "    time.sleep(2)\n"
            f"    pathlib.Path({str(done)!r}).touch()\n"
            "atexit.register(slow)\n"
        )
        kernel.run(handler, timeout=60).raise_for_error()
    assert done.exists()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True  # gone meanwhile


def test_kernels_are_shut_down_at_interpreter_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import kernelwire\n"
        "kernel = kernelwire.start_kernel('python3')\n"
        "print(kernel.pid, kernel.connection_file, flush=True)\n"
        "# no shutdown: leaving the interpreter must stop it\n"
    )
    argv = [sys.executable, "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pid, connection_file = done.stdout.split()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert not Path(connection_file).exists()


def test_a_hung_kernel_is_reported_by_its_heartbeat() -> None:
    """A client that knows only the connection file has the heartbeat to go by; one that
    watches the process knows the kernel is alive, so its request just times out."""
    with start_kernel("python3") as kernel:
        assert kernel.connection_file is not None
        own = kernel.client(time_to_dead=1.0)
        other = kernelwire.BlockingKernelClient(kernel.connection_file, time_to_dead=1.0)
        other.start_channels()
        other.wait_for_ready(60)
        # A pong first: a kernel stopped before its heartbeat connection's handshake is
        # never judged by the heartbeat (no ping goes out), only by the request's
        # timeout. Under load the handshake came after the stop in two full runs.
        deadline = time.monotonic() + 60
        while not other.is_alive():
            assert time.monotonic() < deadline, "no pong within 60 s"
        os.kill(kernel.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(KernelDied, match="heartbeat"):
                other.execute("1", reply=True, timeout=30)
            assert time.monotonic() - started < 3.0
            with pytest.raises(KernelTimeout):
                own.execute("1", reply=True, timeout=3)
        finally:
            os.kill(kernel.pid, signal.SIGCONT)
            other.stop_channels()
        assert own.execute("2", reply=True, timeout=60)["content"]["status"] == "ok"


def test_a_command_that_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    spec = kernelwire.KernelSpec(
        name="broken",
        argv=(str(tmp_path / "no-such-program"), "-f", "{connection_file}"),
        display_name="Broken",
        language="python",
        resource_dir=str(tmp_path),
    )
    kernel = kernelwire.Kernel(spec)
    try:
        with pytest.raises(kernelwire.KernelLaunchError, match="no-such-program"):
            kernel.start()
    finally:
        kernel.shutdown(now=True)
    assert kernel.connection_file is None or not Path(kernel.connection_file).exists()
    with pytest.raises(kernelwire.KernelLaunchError, match="missing-dir"):
        start_kernel("python3", cwd=str(tmp_path / "missing-dir"))


def _start_and_stop_on(loop: asyncio.AbstractEventLoop) -> None:
    async def start_and_stop() -> None:
        kernel = await start_kernel_async("python3")
        await kernel.shutdown(now=True)

    loop.run_until_complete(start_and_stop())


def test_asyncio_kernels_work_in_a_process_forked_with_a_live_loop() -> None:
    """A loop that lived through a fork (jupyter_core's ``run_sync`` keeps one; a
    ``ProcessPoolExecutor`` forks) still starts and stops kernels in the child: the
    loop's default executor comes across without its threads, and work queued on it
    would wait for ever (nbclient's test_many_parallel_notebooks hung so)."""
    import multiprocessing

    loop = asyncio.new_event_loop()
    try:
        _start_and_stop_on(loop)  # the parent's loop has used worker threads
        child = multiprocessing.get_context("fork").Process(target=_start_and_stop_on, args=(loop,))
        child.start()
        child.join(90)  # under the suite's 120 s per test
        if child.is_alive():
            child.kill()
            child.join(10)
            pytest.fail("the forked process hung starting a kernel")
        assert child.exitcode == 0
    finally:
        loop.close()
