"""Remote kernels through a real Jupyter Enterprise Gateway on 127.0.0.1.

Enterprise Gateway 3.3 pins jupyter_client<7, jupyter_server<2 and pyzmq<25, which the
test environment cannot hold, so it runs from a virtual environment of its own, built
once per machine (with ``uv``, the test extras install it; ``pip`` otherwise) in a cache
folder under a file lock that pytest-xdist workers share. Its default process proxy
runs kernels as local processes: enough to test the protocol (the ``KERNEL_``
environment, launch timeouts, culling, errors), not pods on Kubernetes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import kernelwire
from kernelwire import KernelDied, KernelEnvError, KernelTimeout
from kernelwire.remote import JupyterServer, ServerError, connect_server
from test_remote import TOKEN, jupyter_server_url, serving  # noqa: F401 - a fixture

EG_VERSION = "3.3.0"
EG_REQUIREMENTS = [f"jupyter_enterprise_gateway=={EG_VERSION}", "ipykernel<7"]
BUILD_TIMEOUT = 900.0
USER = {"KERNEL_USERNAME": "ada"}
"""Every start names a user: the gateway refuses to start kernels for root, its own user
when the tests run as root, unless the request names another."""
SLOW_START = 4.0
"""Seconds the ``slow_python`` kernel sleeps before it starts (a pod being scheduled)."""


def _cache_root() -> Path:
    root = os.environ.get("KERNELWIRE_TEST_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "kernelwire-tests"


def _build(venv: Path) -> None:
    """Create ``venv`` with Enterprise Gateway in it; pytest.fail with the installer's
    output if that fails (no network, no wheel): a missing gateway is not a skip."""
    try:
        from uv import find_uv_bin

        uv: str | None = find_uv_bin()
    except ImportError:
        uv = None
    if uv is not None:
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                *EG_REQUIREMENTS,
            ],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *EG_REQUIREMENTS],
        ]
    for argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"building the Enterprise Gateway venv timed out: {' '.join(argv)}")
        if done.returncode != 0:
            pytest.fail(
                f"could not build the Enterprise Gateway venv at {venv} (network? wheels "
                f"for Python {sys.version_info.major}.{sys.version_info.minor}?): "
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )


@pytest.fixture(scope="session")
def eg_venv() -> Path:
    """A virtual environment with Enterprise Gateway, built once and reused."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    tag = f"eg-venv-{EG_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    venv = root / tag
    complete = venv / "kernelwire-complete"
    with open(root / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one xdist worker builds, the others wait
        try:
            if not complete.exists():
                shutil.rmtree(venv, ignore_errors=True)  # a build cut short
                started = time.monotonic()
                _build(venv)
                complete.write_text(f"built in {time.monotonic() - started:.1f} s\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return venv


def _slow_kernel_spec(venv: Path, data_dir: Path) -> None:
    """A kernel spec whose kernel sleeps before it starts, as a scheduled pod would."""
    code = (
        "import os, time; time.sleep(float(os.environ.get('KERNEL_SLOW_START', "
        f"'{SLOW_START}'))); from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    )
    spec = {
        "argv": [str(venv / "bin" / "python"), "-c", code, "-f", "{connection_file}"],
        "display_name": "Python 3 (slow to start)",
        "language": "python",
    }
    folder = data_dir / "kernels" / "slow_python"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps(spec))


@contextlib.contextmanager
def enterprise_gateway(venv: Path, tmp: Path, *options: str) -> Iterator[str]:
    """Run Enterprise Gateway from ``venv`` until it answers; afterwards stop it and
    kill any kernel it left (kernels run in sessions of their own, so stopping the
    gateway's process group does not reach them)."""
    _slow_kernel_spec(venv, tmp / "data")

    def argv_for(port: int) -> list[str]:
        return [
            str(venv / "bin" / "jupyter-enterprisegateway"),
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port_retries=0",
            f"--EnterpriseGatewayApp.auth_token={TOKEN}",
            *options,
        ]

    kernels: set[psutil.Process] = set()

    def watch(stop: threading.Event) -> None:
        # Kernels are noted while the gateway lives: once it is gone, they are orphans.
        while not stop.wait(0.2):
            with contextlib.suppress(psutil.Error):
                kernels.update(gateway.children(recursive=True))

    with serving(argv_for, tmp) as url:
        port = urllib.parse.urlsplit(url).port
        gateway = next(p for p in psutil.Process().children() if f"--port={port}" in p.cmdline())
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
        watcher.start()
        try:
            yield url
        finally:
            stop.set()
            watcher.join()
            with contextlib.suppress(psutil.Error):
                kernels.update(gateway.children(recursive=True))
    left = [kernel for kernel in kernels if _alive(kernel)]
    for kernel in left:
        with contextlib.suppress(psutil.Error):
            kernel.kill()
    assert not left, f"Enterprise Gateway left kernel processes running: {left}"


def _alive(process: psutil.Process) -> bool:
    """Whether ``process`` still runs: a zombie (killed, not yet reaped by whoever
    inherited it) does not."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def eg_url(eg_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with enterprise_gateway(eg_venv, tmp_path_factory.mktemp("eg")) as url:
        yield url


@pytest.fixture(scope="module")
def culling_eg_url(eg_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway that culls kernels idle for 10 s, connected or not, every second
    (long enough that a loaded machine gets its first run in before the cull)."""
    options = [
        "--MappingKernelManager.cull_idle_timeout=10",
        "--MappingKernelManager.cull_interval=1",
        "--MappingKernelManager.cull_connected=True",
    ]
    with enterprise_gateway(eg_venv, tmp_path_factory.mktemp("eg-culling"), *options) as url:
        yield url


@pytest.fixture
def gateway(eg_url: str) -> Iterator[JupyterServer]:
    with connect_server(eg_url, TOKEN, gateway="enterprise") as server:
        yield server


def test_the_gateway_is_detected_and_kernel_env_reaches_the_kernel(eg_url: str) -> None:
    with connect_server(eg_url, TOKEN) as server:
        assert server.enterprise
        with server.start_kernel("python3", env={"KERNEL_USERNAME": "ada"}) as kernel:
            seen = kernel.run("import os; os.environ.get('KERNEL_USERNAME')").text
        assert seen == "'ada'"


def test_a_jupyter_server_is_not_taken_for_an_enterprise_gateway(
    jupyter_server_url: str,  # noqa: F811 - the fixture
) -> None:
    with connect_server(jupyter_server_url, TOKEN) as server:
        assert not server.enterprise
    with connect_server(jupyter_server_url, TOKEN, gateway="enterprise") as server:
        assert server.enterprise  # as told, unasked
    with pytest.raises(ValueError, match="gateway must be"):
        connect_server(jupyter_server_url, TOKEN, gateway="kubernetes")  # type: ignore[arg-type]


def test_a_variable_the_gateway_would_drop_is_refused_before_the_start(
    gateway: JupyterServer,
) -> None:
    with pytest.raises(KernelEnvError) as excinfo:
        gateway.start_kernel("python3", env={"KERNEL_USERNAME": "ada", "SPARK_HOME": "/x"})
    message = str(excinfo.value)
    assert "SPARK_HOME" in message and "KERNEL_USERNAME" not in message
    assert "Enterprise Gateway" in message and gateway.transport.url in message
    # what the check stands for: the gateway really drops it
    env = {"KERNEL_USERNAME": "ada", "SPARK_HOME": "/x"}
    with gateway.start_kernel("python3", env=env, check_env=False) as kernel:
        seen = kernel.run("import os; os.environ.get('SPARK_HOME')").text
    assert seen is None


def test_run_interrupt_restart_shutdown(gateway: JupyterServer) -> None:
    with gateway.start_kernel("python3", env=USER) as kernel:
        assert kernel.run("x = 6 * 7; x").text == "42"
        results: list[kernelwire.ExecutionResult] = []
        sleeper = threading.Thread(
            target=lambda: results.append(kernel.run("import time; time.sleep(60)"))
        )
        sleeper.start()
        try:
            deadline = time.monotonic() + 30
            while kernel.info().get("execution_state") != "busy":
                assert time.monotonic() < deadline, "the sleep never started"
                time.sleep(0.1)
            kernel.interrupt()
        finally:
            sleeper.join(30)
        assert not sleeper.is_alive(), "the interrupt did not stop the sleep"
        error = results[0].error
        assert error is not None and error.ename == "KeyboardInterrupt"
        assert kernel.run("x").text == "42"  # interrupted, not restarted
        kernel.restart()
        error = kernel.run("x", timeout=60).error
        assert error is not None and error.ename == "NameError"
        kernel_id = kernel.kernel_id
    with pytest.raises(ServerError) as excinfo:
        gateway.kernel(kernel_id)
    assert excinfo.value.status == 404


def test_a_slow_launch_waits_as_long_as_allowed_and_reports_progress(
    gateway: JupyterServer, caplog: pytest.LogCaptureFixture
) -> None:
    waited: list[float] = []
    caplog.set_level("INFO", logger="kernelwire.remote")
    with gateway.start_kernel(
        "slow_python", env=USER, launch_timeout=120, progress=waited.append, progress_every=0.5
    ) as kernel:
        # start_kernel returned a kernel that answers: the sleep is behind it
        assert kernel.run("import os; os.environ['KERNEL_LAUNCH_TIMEOUT']").text == "'120'"
    assert waited and waited == sorted(waited)
    assert any("still waiting for kernel" in r.getMessage() for r in caplog.records)


def test_a_launch_past_its_timeout_names_the_gateway_and_the_kernel(
    gateway: JupyterServer,
) -> None:
    with pytest.raises(KernelTimeout) as excinfo:
        gateway.start_kernel("slow_python", env=USER, launch_timeout=1)
    message = str(excinfo.value)
    assert "slow_python" in message and gateway.transport.url in message
    assert "Enterprise Gateway" in message and "launch_timeout=1" in message
    assert "deleted" in message


def test_error_bodies_show_the_gateways_reason(gateway: JupyterServer) -> None:
    with pytest.raises(ServerError) as excinfo:
        gateway.transport.request("POST", "api/kernels", json={"name": "no_such_kernel"})
    message = str(excinfo.value)
    assert "Internal Server Error" in message and "Unknown server error" in message
    assert "No such kernel named no_such_kernel" in message  # the traceback's last line
    assert "Traceback" not in message
    with pytest.raises(kernelwire.NoSuchKernel) as missing:
        gateway.start_kernel("no_such_kernel", env=USER)
    assert "python3" in missing.value.available
    with pytest.raises(kernelwire.AuthenticationError) as refused:
        gateway.start_kernel("python3", env={"KERNEL_USERNAME": "root"})
    assert "User 'root' is not authorized" in str(refused.value)
    assert "token" not in str(refused.value)
    with pytest.raises(ServerError) as listing:
        gateway.list_kernels()
    assert "list_kernels=True" in str(listing.value)
    assert not isinstance(listing.value, kernelwire.AuthenticationError)


def test_kernel_specs_and_the_cli_listing(gateway: JupyterServer, eg_url: str) -> None:
    assert {"python3", "slow_python"} <= set(gateway.kernel_specs())
    done = subprocess.run(
        [sys.executable, "-m", "kernelwire", "kernels", "--server", eg_url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "python3" in done.stdout and "slow_python" in done.stdout


def test_a_culled_kernel_is_reported_dead(culling_eg_url: str) -> None:
    with connect_server(culling_eg_url, TOKEN) as server:
        connected = server.start_kernel("python3", env=USER)
        unconnected = server.start_kernel("python3", env=USER)
        with connected, unconnected:
            assert connected.run("1 + 1").text == "2"
            deadline = time.monotonic() + 60
            while connected.is_alive() or unconnected.is_alive():
                assert time.monotonic() < deadline, "the gateway did not cull the kernels"
                time.sleep(0.2)
            # No timeout given: a hang here would be the defect (the suite's own
            # timeout is the safety net).
            with pytest.raises(KernelDied) as excinfo:
                connected.run("1 + 1")
            assert "culled" in str(excinfo.value)
            with pytest.raises(KernelDied) as excinfo:
                unconnected.run("1 + 1")
            assert "culled" in str(excinfo.value) and unconnected.kernel_id in str(excinfo.value)
