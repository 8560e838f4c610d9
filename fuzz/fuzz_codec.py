"""Fuzz the multipart decoder: every input is a message or a ProtocolError, never a crash.

    pip install atheris
    python fuzz/fuzz_codec.py -atheris_runs=200000          # or -max_total_time=600

The fuzzer's bytes choose raw frames, or a message with fuzzed JSON frames that is
correctly signed (so the decoder past the signature check is reached), wrongly signed,
or truncated.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from kernelwire.errors import ProtocolError
    from kernelwire.protocol.codec import DELIMITER, Session

KEY = b"fuzz-key"
SIGNER = Session(KEY).signer


JSON_SEEDS = [
    b"{}",
    b"null",
    b"[]",
    b'{"msg_id": "a", "msg_type": "status", "date": "2024-01-01T00:00:00Z"}',
]


def frames_from(data: bytes) -> list[bytes]:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:  # raw frames, anything at all
        return [
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
            for _ in range(fdp.ConsumeIntInRange(0, 9))
        ]
    identities = [fdp.ConsumeBytes(8) for _ in range(fdp.ConsumeIntInRange(0, 2))]
    json_frames = []
    for _ in range(4):
        if fdp.ConsumeBool():
            json_frames.append(JSON_SEEDS[fdp.ConsumeIntInRange(0, len(JSON_SEEDS) - 1)])
        else:
            json_frames.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 128)))
    buffers = [fdp.ConsumeBytes(16) for _ in range(fdp.ConsumeIntInRange(0, 2))]
    signature = SIGNER.sign(json_frames) if mode != 1 else fdp.ConsumeBytes(64)
    frames = [*identities, DELIMITER, signature, *json_frames, *buffers]
    if mode == 3:  # truncated
        frames = frames[: fdp.ConsumeIntInRange(0, len(frames))]
    return frames


def test_one_input(data: bytes) -> None:
    session = Session(KEY, check_replay=False)
    try:
        message = session.decode(frames_from(data))[1]
    except ProtocolError:
        return
    assert isinstance(message["header"], dict) and isinstance(message["content"], dict)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
