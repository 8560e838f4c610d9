"""kernelwire's jupyter_client-compatible manager layer, on real kernels.

The corpus in ``tests/compat`` compares whole scripts with jupyter_client; these tests
check what that comparison cannot see: kernelwire's own guarantees under the
jupyter_client API (death detection, restarts, output kept, files removed).
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("jupyter_client", reason="the manager layer subclasses jupyter_client's")

import jupyter_client

import kernelwire
from kernels_for_tests import StartupNoiseKernel
from kernelwire import BlockingKernelClient, KernelDied, run_kernel_in_process
from kernelwire.manager import AsyncKernelManager, KernelManager


@pytest.fixture
def km(no_leaks: None) -> Iterator[KernelManager]:
    """A started kernelwire KernelManager (python3), shut down afterwards."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    try:
        yield manager
    finally:
        manager.shutdown_kernel(now=True)
    assert not os.path.exists(manager.connection_file)


def stream_texts(kc: BlockingKernelClient, msg_id: str) -> list[str]:
    """The stream texts of ``msg_id``'s IOPub messages, read with ``get_iopub_msg``
    (everything the loop sees, whoever caused it), up to its idle status."""
    texts = []
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
        if (
            msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == msg_id
        ):
            return texts


def test_tools_type_checks_accept_the_managers() -> None:
    assert issubclass(KernelManager, jupyter_client.KernelManager)
    assert issubclass(AsyncKernelManager, jupyter_client.AsyncKernelManager)
    assert kernelwire.KernelManager is KernelManager
    nbclient = pytest.importorskip("nbclient")
    client = nbclient.NotebookClient(
        __import__("nbformat").v4.new_notebook(), kernel_manager_class=AsyncKernelManager
    )
    assert client.kernel_manager_class is AsyncKernelManager


def test_client_made_before_start_connects_once_started(no_leaks: None) -> None:
    manager = KernelManager(kernel_name="python3")
    early = manager.client()  # ports still 0, as nbclient's tests do
    assert manager.shell_port == 0 and early.connection_info is None
    manager.start_kernel()
    try:
        early.start_channels()
        assert early.execute("6 * 7", reply=True, timeout=30)["content"]["status"] == "ok"
        early.stop_channels()
    finally:
        manager.shutdown_kernel(now=True)


def test_manager_client_reports_death(km: KernelManager) -> None:
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    msg_id = kc.execute("import time; time.sleep(60)")
    os.killpg(km.kernel.pid, signal.SIGKILL)  # type: ignore[union-attr]
    with pytest.raises(KernelDied):
        kc.get_shell_msg(timeout=30)
    assert msg_id
    kc.stop_channels()


def test_client_kept_across_restart_now(km: KernelManager) -> None:
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kc.execute_interactive("a = 1", timeout=30)
    pid = km.kernel.pid  # type: ignore[union-attr]
    for _ in range(3):  # a false KernelDied would show on any of these
        km.restart_kernel(now=True)
        assert km.kernel.pid != pid  # type: ignore[union-attr]
        pid = km.kernel.pid  # type: ignore[union-attr]
        reply = kc.execute_interactive("print(a)", timeout=30, output_hook=lambda m: None)
        assert reply["content"]["ename"] == "NameError"  # a new process: namespace gone
        kc.execute_interactive("a = 1", timeout=30)
        assert kc.is_alive()
    kc.stop_channels()


def test_startup_output_is_set_aside_not_dropped(tmp_path: Path) -> None:
    with run_kernel_in_process(tmp_path / "k.json", kernel_class=StartupNoiseKernel) as kernel:
        kc = BlockingKernelClient(kernel.connection_file)
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            msg_id = kc.execute("print('cell one')")
            assert stream_texts(kc, msg_id) == ["cell one\n"]
            assert [m["content"]["text"] for m in kc.startup_output] == ["startup noise\n"]
        finally:
            kc.stop_channels()


def test_startup_output_is_set_aside_async(tmp_path: Path) -> None:
    async def main() -> tuple[list[str], list[str]]:
        with run_kernel_in_process(tmp_path / "k.json", kernel_class=StartupNoiseKernel) as k:
            kc = kernelwire.AsyncKernelClient(k.connection_file)
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=60)
                msg_id = kc.execute("print('one')")
                texts = []
                while True:
                    msg = await kc.get_iopub_msg(timeout=30)
                    if msg["msg_type"] == "stream":
                        texts.append(msg["content"]["text"])
                    if (
                        msg["msg_type"] == "status"
                        and msg["parent_header"].get("msg_id") == msg_id
                        and msg["content"]["execution_state"] == "idle"
                    ):
                        break
                return texts, [m["content"]["text"] for m in kc.startup_output]
            finally:
                kc.stop_channels()

    texts, startup = asyncio.run(main())
    assert texts == ["one\n"] and startup == ["startup noise\n"]


def test_async_manager_with_nbclient_flow(no_leaks: None) -> None:
    async def main() -> str:
        manager = AsyncKernelManager(kernel_name="python3")
        await manager.start_kernel(cwd="/")
        try:
            kc = manager.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=60)
            reply = await kc.execute_interactive(
                "import os; print(os.getcwd())", timeout=30, output_hook=lambda m: None
            )
            kc.stop_channels()
            return str(reply["content"]["status"])
        finally:
            await manager.shutdown_kernel()
            assert not await manager.is_alive()

    assert asyncio.run(main()) == "ok"


def test_unknown_kernel_is_both_errors() -> None:
    manager = KernelManager(kernel_name="no-such-kernel-xyz")
    with pytest.raises(jupyter_client.kernelspec.NoSuchKernel) as excinfo:
        manager.start_kernel()
    assert isinstance(excinfo.value, kernelwire.NoSuchKernel)
    assert "no-such-kernel-xyz" in str(excinfo.value)


def test_get_iopub_msg_after_restart_is_not_empty_forever(km: KernelManager) -> None:
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    km.restart_kernel(now=True)
    msg_id = kc.execute("print('after')")
    assert stream_texts(kc, msg_id) == ["after\n"]
    with pytest.raises(queue.Empty):  # nothing left over from before the restart
        kc.get_iopub_msg(timeout=0.2)
    kc.stop_channels()
