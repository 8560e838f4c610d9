"""Small kernel classes the tests run with run_kernel_in_process (importable by the child)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelbase import Kernel


class EchoKernel(Kernel):
    """Echoes the code it is given as a stream and as the result."""

    implementation = "echo"
    implementation_version = "1.0"
    language_info: ClassVar[dict[str, str]] = {
        "name": "echo",
        "mimetype": "text/plain",
        "file_extension": ".txt",
    }
    banner = "Echo kernel"

    def do_execute(  # type: ignore[override]
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: Any = None,
        allow_stdin: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if not silent:
            self.send_response(self.iopub_socket, "stream", {"name": "stdout", "text": code})
            self.send_response(
                self.iopub_socket,
                "execute_result",
                {
                    "execution_count": self.execution_count,
                    "data": {"text/plain": code.upper()},
                    "metadata": {},
                },
            )
        return {
            "status": "ok",
            "execution_count": self.execution_count,
            "payload": [],
            "user_expressions": {},
        }


class BrokenKernel(Kernel):
    """Fails while starting: run_kernel_in_process must report it with the kernel's stderr."""

    implementation = "broken"
    implementation_version = "0"
    language_info: ClassVar[dict[str, str]] = {"name": "broken"}

    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("broken kernel refuses to start")


class WedgedKernel(Kernel):
    """Hangs while starting, using no CPU: a start-up timeout must show where it hangs."""

    implementation = "wedged"
    implementation_version = "0"
    language_info: ClassVar[dict[str, str]] = {"name": "wedged"}

    def __init__(self, **kwargs: Any) -> None:
        threading.Event().wait()  # wedged_in_its_start


class StartupNoiseKernel(IPythonKernel):
    """An IPython kernel that writes to stderr, with no parent, whenever it is asked for
    kernel info: like output a kernel prints while it starts (debugpy's frozen-modules
    warning) reaching a client that is waiting for it to be ready."""

    async def kernel_info_request(self, socket: Any, ident: Any, parent: Any) -> None:  # type: ignore[override]
        self.session.send(
            self.iopub_socket,
            "stream",
            {"name": "stderr", "text": "startup noise\n"},
            parent={},
            ident=self._topic("stream"),
        )
        await super().kernel_info_request(socket, ident, parent)
