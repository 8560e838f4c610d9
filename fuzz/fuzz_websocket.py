"""Fuzz the WebSocket frame decoders (v1 binary and legacy): a message or ProtocolError.

pip install atheris
python fuzz/fuzz_websocket.py -atheris_runs=300000
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from kernelwire.errors import ProtocolError
    from kernelwire.protocol.websocket import decode_legacy, decode_v1


def v1_frame(fdp: atheris.FuzzedDataProvider) -> bytes:
    parts = [
        fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)) for _ in range(fdp.ConsumeIntInRange(0, 8))
    ]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    if fdp.ConsumeBool():  # corrupt one offset
        offsets[fdp.ConsumeIntInRange(0, len(offsets) - 1)] = fdp.ConsumeIntInRange(0, 2**20)
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    try:
        if mode == 0:
            decode_v1(fdp.ConsumeBytes(fdp.remaining_bytes()))
        elif mode == 1:
            decode_v1(v1_frame(fdp))
        elif mode == 2:
            decode_legacy(fdp.ConsumeBytes(fdp.remaining_bytes()))
        else:
            decode_legacy(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()))
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
