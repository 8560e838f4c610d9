"""Codec: serialize + sign + verify + deserialize one message, kernelwire vs jupyter_client.

Each round builds a fresh message (so kernelwire's replay guard, which stays on, sees
distinct signatures), encodes it to signed frames and decodes those frames on a
second session, as a kernel and a client would. jupyter_client's ``Session`` does the
same with ``msg`` / ``serialize`` / ``feed_identities`` / ``deserialize``.

    python bench/codec.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.session import Session as JupyterSession

from _common import table
from kernelwire.protocol.codec import Session

KEY = b"0123456789abcdef0123456789abcdef"

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "execute_request": ("execute_request", {"code": "x = 1\nprint(x)", "silent": False}),
    "stream (small)": ("stream", {"name": "stdout", "text": "hello world\n"}),
    "execute_reply": ("execute_reply", {"status": "ok", "execution_count": 7, "payload": []}),
    "stream (10 kB)": ("stream", {"name": "stdout", "text": "x" * 10_000}),
}


def ours(msg_type: str, content: dict[str, Any]) -> Callable[[], None]:
    sender, receiver = Session(KEY), Session(KEY)
    parent = sender.message("execute_request", {"code": ""})

    def once() -> None:
        frames = sender.encode(sender.message(msg_type, content, parent=parent))
        receiver.decode(frames)

    return once


def theirs(msg_type: str, content: dict[str, Any]) -> Callable[[], None]:
    sender = JupyterSession(key=KEY, signature_scheme="hmac-sha256")
    receiver = JupyterSession(key=KEY, signature_scheme="hmac-sha256")
    parent = sender.msg("execute_request", {"code": ""})

    def once() -> None:
        frames = sender.serialize(sender.msg(msg_type, content, parent=parent))
        _, frames = receiver.feed_identities(frames)
        receiver.deserialize(frames)

    return once


def per_call(func: Callable[[], None], number: int, repeats: int) -> list[float]:
    """Seconds per call, one figure per repeat."""
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            func()
        out.append((time.perf_counter() - started) / number)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    number, repeats = (2_000, 5) if args.quick else (10_000, 15)
    ratios = []
    for name, (msg_type, content) in CASES.items():
        mine, reference = ours(msg_type, content), theirs(msg_type, content)
        mine_t, ref_t = [], []
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            mine_t += per_call(mine, number, 1)
            ref_t += per_call(reference, number, 1)
        print(f"\n{name}")
        table({"kernelwire Session": mine_t, "jupyter_client Session": ref_t}, "us", 1e6)
        ratio = statistics.median(ref_t) / statistics.median(mine_t)
        ratios.append(ratio)
        print(f"{'ratio (jupyter_client / kernelwire)':<34}{ratio:>14.2f}")
    print(
        f"\ncodec: kernelwire is {statistics.median(ratios):.2f}x faster per message (median of "
        f"{len(ratios)} message kinds; goal >= 4x)"
    )


if __name__ == "__main__":
    main()
