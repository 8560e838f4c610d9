"""Client memory with messages nobody claims: 1M tiny IOPub messages, bounded and not.

A publisher process plays a kernel's IOPub socket and sends N signed ``stream``
messages (each with a parent header, as a kernel's are); a client that never calls
``get_iopub_msg`` reads them all. Each configuration runs in a fresh process and
reports its resident memory above the baseline once everything is read, and at its
peak, plus what was kept and dropped.

By default the publisher sends in chunks of 10,000 and waits for the client to have
read each (a kernel the client keeps up with), so the figures are what kernelwire
holds. With ``--unpaced`` it sends as fast as it can: where the client reads slower
than that, ZeroMQ buffers the backlog in the client's process too (the IOPub socket
has no high-water mark, so that nothing is dropped silently), and the peak shows it.

    python bench/memory.py              # 1,000,000 messages
    python bench/memory.py --quick      # 100,000
    python bench/memory.py --unpaced
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import subprocess
import sys
import threading
import time

CHUNK = 10_000
PUBLISHER = """
import json, sys
import zmq
from kernelwire.protocol.codec import Session
from kernelwire.protocol.connection import load_connection_info

info = load_connection_info(sys.argv[1])
count, chunk = int(sys.argv[2]), int(sys.argv[3])
session = Session(info.key_bytes, check_replay=False)
pub = zmq.Context.instance().socket(zmq.XPUB)
pub.sndhwm = 0  # the publisher keeps everything: the client decides what to drop
pub.bind(info.url("iopub"))
print("ready", flush=True)
pub.recv()  # the client's subscription: from now on nothing is lost to a slow join
parent = session.message("execute_request", {"code": "print('x')"})
for sent in range(1, count + 1):
    pub.send_multipart(session.encode(
        session.message("stream", {"name": "stdout", "text": "x\\n"}, parent=parent)
    ))
    if chunk and sent % chunk == 0:
        sys.stdin.readline()  # the client has read this chunk
pub.send_multipart(session.encode(session.message("status", {"execution_state": "end"})))
sys.stdin.read()  # until the client has read everything
"""


def rss_mb() -> float:
    """This process's resident memory, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def trim() -> None:
    """Hand memory the allocator keeps after frees back to the system (glibc), so that
    what is left is what live objects hold; elsewhere, nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(count: int, bound: str, chunk: int) -> dict[str, float]:
    """One configuration (``bound``: ``none`` or ``default``), in this process: RSS
    growth once everything is read and at its peak, and the router's counters."""
    from kernelwire import BlockingKernelClient
    from kernelwire.connection_file import new_connection_info

    info = new_connection_info()
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, json.dumps(info.to_dict()), str(count), str(chunk)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert publisher.stdin is not None and publisher.stdout is not None
        assert publisher.stdout.readline() == "ready\n"
        if bound == "none":
            client = BlockingKernelClient(connection_info=info, max_unclaimed=None)
        else:
            client = BlockingKernelClient(connection_info=info)
        client.start_channels(shell=False, stdin=False, control=False, hb=False)
        router = client.engine.router
        base = rss_mb()
        peak = base
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_mb())
                time.sleep(0.01)

        acked = 0

        def all_read() -> bool | None:
            nonlocal acked
            while chunk and acked + chunk <= min(router.received, count):
                acked += chunk
                publisher.stdin.write("next\n")  # type: ignore[union-attr]
                publisher.stdin.flush()  # type: ignore[union-attr]
            return True if router.received > count else None

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        client.engine.wait_for(all_read, 3600)
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        held = rss_mb() - base
        peak = max(peak, rss_mb())
        trim()
        result = {
            "held_mb": held,
            "live_mb": rss_mb() - base,
            "peak_mb": peak - base,
            "kept": len(router.unclaimed["iopub"]),
            "dropped": client.unclaimed_dropped["iopub"],
            "seconds": elapsed,
        }
        client.stop_channels()
        return result
    finally:
        if publisher.stdin is not None:
            publisher.stdin.close()
        publisher.wait(30)
        if publisher.stdout is not None:
            publisher.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 messages")
    parser.add_argument("--unpaced", action="store_true", help="publish as fast as possible")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunk = 0 if args.unpaced else CHUNK
    if args.child is not None:  # one configuration, in a fresh process
        print(json.dumps(measure(args.count, args.child, chunk)))
        return
    from kernelwire.client.routing import MAX_UNCLAIMED

    count = 100_000 if args.quick else 1_000_000
    configs = {
        "max_unclaimed=None (unbounded)": "none",
        f"default (max_unclaimed={MAX_UNCLAIMED:,})": "default",
    }
    pace = "as fast as possible" if args.unpaced else f"in chunks of {CHUNK:,}, each read first"
    print(f"{count:,} tiny IOPub messages nobody claims, sent {pace}; MB above the baseline")
    print(f"{'':<34}{'held MB':>9}{'live MB':>9}{'peak MB':>9}{'kept':>11}{'dropped':>11}{'s':>7}")
    extra = ["--unpaced"] if args.unpaced else []
    for name, child in configs.items():
        out = subprocess.run(
            [sys.executable, __file__, "--child", child, "--count", str(count), *extra],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{name:<34}{r['held_mb']:>9.0f}{r['live_mb']:>9.0f}{r['peak_mb']:>9.0f}"
            f"{r['kept']:>11,}{r['dropped']:>11,}{r['seconds']:>7.1f}"
        )
    print(
        "held: RSS once every message is read; live: the same after malloc_trim (what live\n"
        "objects hold, not what the allocator keeps); peak: the highest RSS meanwhile."
    )


if __name__ == "__main__":
    main()
