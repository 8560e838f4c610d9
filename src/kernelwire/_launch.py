"""Child-process entry point of :func:`kernelwire.run_kernel_in_process`.

Run as ``python -m kernelwire._launch CONNECTION_FILE``; the kernel class arrives
pickled (cloudpickle) on standard input, so classes defined in ``__main__``, in
``python -c`` code or in a notebook cell work too.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Start an ipykernel application on the given connection file."""
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
