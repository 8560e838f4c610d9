"""Fuzz the connection-file loader: every input is ConnectionInfo or ConnectionFileError.

pip install atheris
python fuzz/fuzz_connection_file.py -atheris_runs=200000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from kernelwire.errors import ConnectionFileError
    from kernelwire.protocol.connection import load_connection_info


FIELDS = [
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "hb_port",
    "ip",
    "key",
    "transport",
    "signature_scheme",
    "kernel_name",
    "curve_publickey",
    "curve_secretkey",
]


def fuzzed_value(fdp: atheris.FuzzedDataProvider) -> object:
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind == 0:
        return fdp.ConsumeInt(4)
    if kind == 1:
        return fdp.ConsumeUnicodeNoSurrogates(24)
    if kind == 2:
        return fdp.ConsumeBool()
    if kind == 3:
        return None
    if kind == 4:
        return [fdp.ConsumeInt(2)]
    if kind == 5:
        return fdp.ConsumeFloat()
    return {"nested": fdp.ConsumeUnicodeNoSurrogates(8)}


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        document: object = fdp.ConsumeBytes(fdp.remaining_bytes())  # raw JSON text
    else:
        document = {name: fuzzed_value(fdp) for name in FIELDS if fdp.ConsumeBool()}
    try:
        info = load_connection_info(document)  # type: ignore[arg-type]
    except ConnectionFileError:
        return
    assert info.shell_port >= 1 and info.url("shell")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
