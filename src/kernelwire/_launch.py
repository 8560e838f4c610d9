"""Child-process entry point of :func:`kernelwire.run_kernel_in_process`.

Run as a file, ``_launch.py CONNECTION_FILE``, so that the kernel process does not
import the kernelwire package (it imports nothing of it); the kernel class arrives
pickled (cloudpickle) on standard input, so classes defined in ``__main__``, in
``python -c`` code or in a notebook cell work too.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import TextIO

_stacks_out: TextIO | None = None
"""Where the stacks go (faulthandler needs the file kept open)."""


def main() -> None:
    """Start an ipykernel application on the given connection file.

    SIGUSR1 makes it print every thread's stack to stderr: the launcher asks for them
    when the kernel does not answer in time.
    """
    if hasattr(signal, "SIGUSR1"):
        # On a copy of stderr's descriptor: ipykernel sends descriptor 2 to IOPub.
        global _stacks_out
        _stacks_out = os.fdopen(os.dup(2), "w")
        faulthandler.register(signal.SIGUSR1, file=_stacks_out, all_threads=True)
    connection_file = sys.argv[1]
    payload = sys.stdin.buffer.read()
    kernel_class = None
    if payload:
        import cloudpickle

        how, *spec = cloudpickle.loads(payload)
        if how == "import":
            kernel_class = spec[0]
        else:
            name, bases, namespace = spec
            kernel_class = type(name, bases, namespace)
    from ipykernel.kernelapp import IPKernelApp

    options = {} if kernel_class is None else {"kernel_class": kernel_class}
    app = IPKernelApp.instance(**options)
    app.initialize(  # type: ignore[no-untyped-call]
        ["-f", connection_file, "--IPKernelApp.log_level=WARN"]
    )
    app.start()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
