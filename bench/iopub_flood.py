"""IOPub consumption rate: a synthetic publisher floods signed ``stream`` messages.

A child process plays a kernel's IOPub socket: it signs N ``stream`` messages (made
beforehand, so the publisher is never the bottleneck) and publishes them as fast as
ZeroMQ takes them. Each client reads them with ``get_iopub_msg()`` (decoding, verifying
and routing every one) and we time from the first to the last. kernelwire and
jupyter_client are measured in the same run, alternately.

    python bench/iopub_flood.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from typing import Any

import zmq
from jupyter_client import BlockingKernelClient as JupyterClient

from kernelwire import BlockingKernelClient
from kernelwire.connection_file import new_connection_info
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import ConnectionInfo


def publish(info_dict: dict[str, Any], count: int, ready: Any, go: Any) -> None:
    """The child: publish warm-up statuses until told to go, then ``count`` streams."""
    info = ConnectionInfo.from_dict(info_dict)
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.sndhwm = 0
    pub.bind(info.url("iopub"))
    session = Session(info.key_bytes)
    parent = session.message("execute_request", {"code": "flood()"})
    frames = [
        session.encode(
            session.message("stream", {"name": "stdout", "text": f"line {i}\n"}, parent=parent)
        )
        for i in range(count)
    ]
    ready.set()
    while not go.is_set():  # ZeroMQ's slow joiner: publish until the subscriber hears us
        pub.send_multipart(session.encode(session.message("status", {"execution_state": "warm"})))
        time.sleep(0.01)
    time.sleep(0.1)
    for message in frames:
        pub.send_multipart(message)
    time.sleep(60)


def consume(kind: str, count: int) -> float:
    """Messages per second one client reads from a fresh publisher."""
    info = new_connection_info()
    ready, go = mp.Event(), mp.Event()
    child = mp.Process(target=publish, args=(info.to_dict(), count, ready, go), daemon=True)
    child.start()
    client: Any
    try:
        ready.wait(120)
        if kind == "kernelwire":
            client = BlockingKernelClient(connection_info=info)
        else:
            client = JupyterClient()
            client.load_connection_info(info.to_dict())
        client.start_channels(shell=False, stdin=False, control=False, hb=False)
        while client.get_iopub_msg(timeout=10)["content"].get("execution_state") != "warm":
            pass
        go.set()
        received, started = 0, 0.0
        while received < count:
            msg = client.get_iopub_msg(timeout=10)
            if msg["msg_type"] != "stream":
                continue
            if received == 0:
                started = time.perf_counter()
            received += 1
        elapsed = time.perf_counter() - started
        client.stop_channels()
        return (count - 1) / elapsed
    finally:
        child.kill()
        child.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller floods")
    args = parser.parse_args()
    count, rounds = (20_000, 2) if args.quick else (100_000, 5)
    rates: dict[str, list[float]] = {"kernelwire": [], "jupyter_client": []}
    for _ in range(rounds):
        for kind in rates:
            rates[kind].append(consume(kind, count))
    print(f"{count:,} signed stream messages per flood, {rounds} floods each")
    print(f"{'':<18}{'median msg/s':>14}{'min':>12}{'max':>12}")
    for kind, values in rates.items():
        print(
            f"{kind:<18}{statistics.median(values):>14,.0f}{min(values):>12,.0f}{max(values):>12,.0f}"
        )
    ratio = statistics.median(rates["kernelwire"]) / statistics.median(rates["jupyter_client"])
    print(
        f"IOPub consumption: kernelwire reads {ratio:.2f}x as fast as jupyter_client (goal >= 3x)"
    )


if __name__ == "__main__":
    main()
