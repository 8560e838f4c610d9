"""The template process of :class:`kernelwire.ForkServer`: imports ipykernel once, forks kernels.

Run as a file, ``_forkserver_template.py COMMAND_FD REPLY_FD PRELOAD_JSON PRELUDE``, so
that it imports nothing of the kernelwire package. It imports ipykernel (and what
``IPKernelApp.initialize`` would import), the ``preload`` modules, runs ``prelude``, and
then waits on its command pipe. Each command is one JSON line; each answer is one
JSON line on the reply pipe:

- ``{"id": N, "fork": {"args", "cwd", "env", "log"}}`` forks a
  kernel: ``{"id": N, "pid": PID}``, or ``{"id": N, "refused": REASON}``.
- the template reaps its kernels and reports each exit: ``{"exited": PID, "status": CODE}``
  (``CODE`` as :attr:`subprocess.Popen.returncode` gives it: ``-SIGNAL`` when killed).

It starts with ``{"ready": PID, ...}`` (or ``{"error": TRACEBACK}``). The end of the
command pipe (the owner closed it, or died) makes it kill its kernels, report them and exit.
The template never runs a thread, a socket or a ZeroMQ context: a fork copies only the
thread that calls it, so a lock another thread held stays locked in the child forever.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import sys
import threading
import traceback
from typing import Any, TextIO

WARM_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    # Imported by IPKernelApp.initialize (debugpy alone is 0.15 s of it):
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "tornado.platform.asyncio",
    "tornado.queues",
    "psutil",
    "faulthandler",
    "encodings.idna",
)
"""Modules a spawned ipykernel imports before it answers, imported once here. Any of them
missing is fine: the kernel imports what it needs itself."""

_PR_SET_PDEATHSIG = 1


def python_threads() -> int:
    """The Python threads running (the template must run only its main thread)."""
    return threading.active_count()


def os_threads() -> int | None:
    """The threads the OS counts (a native library's pools, e.g. OpenBLAS's, which fork
    themselves safely); ``None`` where ``/proc`` cannot tell."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sockets() -> int:
    """How many sockets this process holds (Linux; 0 elsewhere)."""
    count = 0
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    count += 1
    return count


def unsafe() -> str | None:
    """Why forking this process now would not give a sound kernel, or ``None``."""
    threads = python_threads()
    if threads > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return (
            f"the template runs {threads} threads ({names}; started by a preload module or "
            "the prelude): a forked kernel could inherit a lock held by one of them"
        )
    held = sockets()
    if held:
        return f"the template holds {held} socket(s) (opened by a preload module or the prelude)"
    return None


class Template:
    """The template's state: its namespace for kernels, its kernels, its pipes."""

    def __init__(self, command_fd: int, reply: TextIO, namespace: dict[str, Any] | None) -> None:
        self.command_fd = command_fd
        self.reply = reply
        self.namespace = namespace
        self.children: set[int] = set()
        self.pid = os.getpid()

    def send(self, message: dict[str, Any]) -> None:
        self.reply.write(json.dumps(message) + "\n")
        self.reply.flush()

    def serve(self) -> None:
        """Answer commands until the command pipe ends, reaping kernels as they exit."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        pending = b""
        while True:
            readable, _, _ = select.select([self.command_fd, wake_read], [], [])
            if wake_read in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 512):
                        pass
                self.reap(block=False)
            if self.command_fd in readable:
                data = os.read(self.command_fd, 1 << 16)
                if not data:
                    break
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self.handle(json.loads(line))
        self.stop_children()

    def handle(self, command: dict[str, Any]) -> None:
        request = command.get("fork")
        if request is None:
            self.send({"id": command.get("id"), "refused": f"unknown command {command!r}"})
            return
        reason = unsafe()
        if reason is not None:
            self.send({"id": command["id"], "refused": reason})
            return
        sys.stdout.flush()  # or the child writes the template's buffered output again
        sys.stderr.flush()
        try:
            # Opened before the fork: once the answer is out, the owner removes its name.
            log = os.open(request["log"], os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self.send({"id": command["id"], "refused": f"cannot open the kernel's log: {exc}"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(log)
            self.send({"id": command["id"], "refused": f"fork failed: {exc}"})
            return
        if pid == 0:
            run_kernel(request, self.pid, self.namespace, log)  # never returns
        os.close(log)
        self.children.add(pid)
        self.send({"id": command["id"], "pid": pid})

    def reap(self, block: bool) -> None:
        """Collect the kernels that exited (all of them, waiting, with ``block``)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})

    def stop_children(self) -> None:
        """The owner is gone or closed us: no kernel of ours may outlive it."""
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(BrokenPipeError):
            self.reap(block=True)


def die_with_parent(parent: int) -> None:
    """On Linux, the kernel gets SIGKILL the moment the template exits (ipykernel's own
    check of its parent runs once a second); elsewhere that check alone."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the template died before the line above
        os._exit(1)


def run_kernel(
    request: dict[str, Any], parent: int, namespace: dict[str, Any] | None, log: int
) -> None:
    """In the forked child: become a kernel as a spawned ``python -m ipykernel_launcher``
    would be, with its output going to ``log``, then exit (never return into the
    template's loop)."""
    code: int = 1
    try:
        os.setsid()  # its own session and process group: interrupts and kills reach it
        die_with_parent(parent)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # Nothing of the template's or of another kernel's: its pipes, the log opened above.
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # ipykernel exits when the process JPY_PARENT_PID names is no longer its parent:
        # this template, which lives exactly as long as its owner.
        os.environ["JPY_PARENT_PID"] = str(parent)
        reseed()
        import ipykernel_launcher  # type: ignore[import-untyped]

        # The command line after "python -m ipykernel_launcher": "-f FILE" and the rest.
        sys.argv = [ipykernel_launcher.__file__, *request["args"]]
        from ipykernel.kernelapp import IPKernelApp

        options = {} if namespace is None else {"user_ns": namespace}
        app = IPKernelApp.instance(**options)
        app.initialize(sys.argv[1:])  # type: ignore[no-untyped-call]
        app.start()  # type: ignore[no-untyped-call]
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        # What a spawned kernel's interpreter does at exit (ipykernel and IPython clean up
        # in atexit handlers), but never the template's own unwinding.
        with contextlib.suppress(Exception):
            import atexit

            atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def reseed() -> None:
    """Fresh random generators: every kernel forked from one template would otherwise
    draw the same numbers."""
    import random

    random.seed()  # CPython reseeds it after a fork too; this says so where it is read
    # numpy imports numpy.random on first use: one not imported yet seeds itself afresh.
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):  # a numpy too broken to reseed is the user's
            numpy_random.seed()


def main() -> None:
    """Import, run the prelude, say ready, serve."""
    command_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    preload: list[str] = json.loads(sys.argv[3])
    prelude = sys.argv[4]
    # As ipykernel_launcher does: the kernel's folder is put on the path by IPython itself.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    reply = os.fdopen(reply_fd, "w", buffering=1)
    template = Template(command_fd, reply, None)
    try:
        for name in WARM_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        for name in preload:
            importlib.import_module(name)
        if prelude:
            namespace: dict[str, Any] = {"__name__": "__main__"}
            exec(compile(prelude, "<prelude>", "exec"), namespace)
            template.namespace = namespace
    except BaseException:
        template.send({"error": traceback.format_exc()})
        return
    template.send(
        {
            "ready": os.getpid(),
            "python": sys.executable,
            "unsafe": unsafe(),
            "os_threads": os_threads(),
        }
    )
    template.serve()


if __name__ == "__main__":
    main()
