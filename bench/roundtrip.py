"""Execute round trip on a real ipykernel: kernelwire, jupyter_client and a raw-pyzmq floor.

One ipykernel; the clients take turns, one connected at a time. A round trip is
``execute("pass")`` from sending the request until both its ``execute_reply`` and its
IOPub ``status: idle`` are in. The floor is hand-written pyzmq: DEALER + SUB sockets,
messages signed with ``hmac`` and parsed with ``orjson`` just enough to match the
parent ``msg_id``: what any Python client must at least do. The blocking clients and
the asyncio clients (each round in its own ``asyncio.run``) are timed alike. Rounds are
interleaved so machine noise hits them all alike.

    python bench/roundtrip.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import statistics
import time
import uuid
from datetime import datetime, timezone

import orjson
import zmq
from jupyter_client import BlockingKernelClient as JupyterClient
from jupyter_client.asynchronous import AsyncKernelClient as JupyterAsyncClient

from _common import table, timed
from kernelwire import AsyncKernelClient, BlockingKernelClient, requests, run_kernel_in_process
from kernelwire.protocol.connection import ChannelName, ConnectionInfo


class RawClient:
    """The floor: the least a Python client can do for one request's round trip."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.key = info.key_bytes
        self.session = uuid.uuid4().hex
        self.counter = itertools.count()
        context = zmq.Context.instance()

        def connected(kind: int, channel: ChannelName) -> zmq.Socket[bytes]:
            sock = context.socket(kind)
            sock.setsockopt(zmq.RECONNECT_IVL, 10)  # as kernelwire: connect soon after a bind
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(info.url(channel))
            return sock

        self.shell = connected(zmq.DEALER, "shell")
        self.control = connected(zmq.DEALER, "control")
        self.iopub = connected(zmq.SUB, "iopub")
        # One poller per replying channel: each socket polled costs a system call.
        self.pollers = {}
        for replying in (self.shell, self.control):
            poller = self.pollers[replying] = zmq.Poller()
            poller.register(replying, zmq.POLLIN)
            poller.register(self.iopub, zmq.POLLIN)

    def join(self, timeout: float = 30.0, retry: float = 0.5) -> None:
        """Wait out ZeroMQ's slow joiner: ``kernel_info`` requests, one every ``retry``
        seconds, until one's reply and IOPub ``idle`` are in (a request sent before IOPub
        is subscribed loses its idle). :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.request("kernel_info_request", {}, timeout=retry):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the kernel answered no kernel_info within {timeout:g} s")

    def execute(self, code: str, store_history: bool = False, timeout: float = 30.0) -> None:
        """Execute ``code``; return once its reply and its ``status: idle`` are in
        (:class:`TimeoutError` after ``timeout`` seconds: a bench never hangs)."""
        content = {
            "code": code,
            "silent": False,
            "store_history": store_history,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        if not self.request("execute_request", content, timeout=timeout):
            raise TimeoutError(f"execute_request: no reply and idle within {timeout:g} s")

    def request(
        self,
        msg_type: str,
        content: dict[str, object],
        *,
        control: bool = False,
        wait_idle: bool = True,
        timeout: float | None = None,
    ) -> bool:
        """Send a request; wait for its reply (and ``idle``): False if ``timeout`` passed."""
        msg_id = f"{self.session}_{next(self.counter)}"
        header = orjson.dumps(
            {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "session": self.session,
                "username": "bench",
                "date": datetime.now(timezone.utc).isoformat(),
                "version": "5.3",
            }
        )
        parts = [header, b"{}", b"{}", orjson.dumps(content)]
        signature = hmac.new(self.key, b"".join(parts), hashlib.sha256).hexdigest().encode()
        replying = self.control if control else self.shell
        poller = self.pollers[replying]
        replying.send_multipart([b"<IDS|MSG>", signature, *parts])
        deadline = None if timeout is None else time.monotonic() + timeout
        got_reply, got_idle = False, not wait_idle
        while not (got_reply and got_idle):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait_ms = None if left is None else int(left * 1000)
            ready = poller.poll(wait_ms)
            if not ready:
                return False
            for sock, _ in ready:
                frames = sock.recv_multipart()
                at = frames.index(b"<IDS|MSG>")
                parent = orjson.loads(frames[at + 3]) or {}  # xeus may send null
                if parent.get("msg_id") != msg_id:
                    continue
                if sock is replying:
                    got_reply = True
                elif orjson.loads(frames[at + 5]).get("execution_state") == "idle":
                    got_idle = True
        return True

    def close(self) -> None:
        for sock in (self.shell, self.control, self.iopub):
            sock.close(0)


def kernelwire_round(client: BlockingKernelClient) -> None:
    pending = client.submit(requests.execute("pass", store_history=False, allow_stdin=False))
    for _ in pending.events(timeout=30):
        pass


def jupyter_round(client: JupyterClient) -> None:
    msg_id = client.execute("pass", store_history=False, allow_stdin=False)
    while client.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
        pass
    while True:
        msg = client.get_iopub_msg(timeout=30)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["content"].get("execution_state") == "idle"
        ):
            return


async def kernelwire_async_rounds(path: str, n: int, out: list[float]) -> None:
    async with AsyncKernelClient(path) as client:
        await client.wait_for_ready(30)
        for index in range(n + 5):  # 5 untimed warm-up rounds, as timed() does
            started = time.perf_counter()
            pending = client.submit(
                requests.execute("pass", store_history=False, allow_stdin=False)
            )
            async for _ in pending.events(timeout=30):
                pass
            if index >= 5:
                out.append(time.perf_counter() - started)


async def jupyter_async_rounds(path: str, n: int, out: list[float]) -> None:
    client = JupyterAsyncClient()
    client.load_connection_file(path)
    client.start_channels()
    try:
        await client.wait_for_ready(30)
        for index in range(n + 5):
            started = time.perf_counter()
            msg_id = client.execute("pass", store_history=False, allow_stdin=False)
            while (await client.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != msg_id:
                pass
            while True:
                msg = await client.get_iopub_msg(timeout=30)
                if (
                    msg["parent_header"].get("msg_id") == msg_id
                    and msg["content"].get("execution_state") == "idle"
                ):
                    break
            if index >= 5:
                out.append(time.perf_counter() - started)
    finally:
        client.stop_channels()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds, batch = (10, 20) if args.quick else (40, 50)
    with run_kernel_in_process() as kernel:
        path, info = kernel.connection_file, kernel.connection_info

        def kernelwire_batch(n: int, out: list[float]) -> None:
            with BlockingKernelClient(path) as client:
                client.wait_for_ready(30)
                timed(lambda: kernelwire_round(client), n, out)

        def jupyter_batch(n: int, out: list[float]) -> None:
            client = JupyterClient()
            client.load_connection_file(path)
            client.start_channels()
            try:
                client.wait_for_ready(30)
                timed(lambda: jupyter_round(client), n, out)
            finally:
                client.stop_channels()

        def floor_batch(n: int, out: list[float]) -> None:
            client = RawClient(info)
            try:
                client.join()
                timed(lambda: client.execute("pass"), n, out)
            finally:
                client.close()

        # Only one client is connected at a time: every client on a kernel receives every
        # IOPub message, so others' traffic would be charged to whoever reads next.
        batches = {
            "raw pyzmq floor": floor_batch,
            "kernelwire BlockingKernelClient": kernelwire_batch,
            "jupyter_client BlockingKernelClient": jupyter_batch,
            "kernelwire AsyncKernelClient": lambda n, out: asyncio.run(
                kernelwire_async_rounds(path, n, out)
            ),
            "jupyter_client AsyncKernelClient": lambda n, out: asyncio.run(
                jupyter_async_rounds(path, n, out)
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in batches}
        for batch_run in batches.values():  # warm up
            batch_run(20, [])
        names = list(batches)
        for index in range(rounds):
            # Rotate who goes first, so a kernel that drifts within a round favours no one.
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                batches[name](batch, times[name])
    table(times, "ms", 1e3)
    floor_median = statistics.median(times["raw pyzmq floor"])
    for name in list(batches)[1:]:
        ratio = statistics.median(times[name]) / floor_median
        print(f"{name:<36} {ratio:6.3f}x the floor ({(ratio - 1) * 100:+.1f}%)")
    print("goal: kernelwire (blocking) within 5% of the floor")


if __name__ == "__main__":
    main()
