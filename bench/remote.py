"""Execute round trip through a Jupyter Server, beside the direct ZeroMQ path, in one run.

Starts a jupyter_server on 127.0.0.1 (token auth) and one kernel through it. Timed:
``execute("pass")`` until its reply and IOPub idle, by

* kernelwire over the server's WebSocket (v1 binary framing),
* a hand-driven ``websockets`` client on the same kernel (legacy JSON framing, minimal
  parsing): another WebSocket client, as the reference for the remote path,
* kernelwire over ZeroMQ on a local kernel: the direct path.

    python bench/remote.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

from websockets.sync.client import connect

from _common import table, timed
from kernelwire import BlockingKernelClient, requests, start_kernel
from kernelwire.connection_file import free_tcp_ports
from kernelwire.remote import ServerConnectionError, connect_server

TOKEN = "bench-token"


def kernelwire_round(client: BlockingKernelClient) -> None:
    for _ in client.submit(requests.execute("pass", store_history=False, allow_stdin=False)).events(
        30
    ):
        pass


class HandClient:
    """A minimal WebSocket kernel client: legacy JSON frames, match the parent id."""

    def __init__(self, url: str, kernel_id: str) -> None:
        ws_url = (
            url.replace("http", "ws", 1)
            + f"api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
        )
        self.ws = connect(
            ws_url,
            additional_headers={"Authorization": f"token {TOKEN}"},
            max_size=None,
            legacy=True,  # kept open across rounds, closed by close()
        )
        self.session = uuid.uuid4().hex

    def execute(self, code: str) -> None:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": "bench",
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        }
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        self.ws.send(
            json.dumps(
                {
                    "channel": "shell",
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                }
            )
        )
        got_reply = got_idle = False
        while not (got_reply and got_idle):
            msg = json.loads(self.ws.recv(timeout=30))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["channel"] == "shell":
                got_reply = True
            elif (
                msg["header"]["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                got_idle = True

    def close(self) -> None:
        self.ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds, batch = (4, 25) if args.quick else (10, 50)
    port = free_tcp_ports(count=1)[0]
    root = tempfile.mkdtemp(prefix="kernelwire-bench-")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--allow-root",
            "--no-browser",
            f"--ServerApp.token={TOKEN}",
            f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={root}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server = connect_server(url, TOKEN)
                break
            except ServerConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with server.start_kernel("python3") as remote, start_kernel("python3") as local:
            remote_client = remote.client()
            hand = HandClient(url, remote.kernel_id)
            local_client = local.client()
            runs = {
                "kernelwire via jupyter_server (v1)": lambda: kernelwire_round(remote_client),
                "hand-driven websockets client": lambda: hand.execute("pass"),
                "kernelwire direct ZeroMQ": lambda: kernelwire_round(local_client),
            }
            times: dict[str, list[float]] = {name: [] for name in runs}
            names = list(runs)
            for index in range(rounds):
                for name in names[index % 3 :] + names[: index % 3]:
                    timed(runs[name], batch, times[name])
            hand.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    table(times, "ms", 1e3)
    base = statistics.median(times["kernelwire direct ZeroMQ"])
    for name in names[:2]:
        print(f"{name:<36} {statistics.median(times[name]) / base:6.3f}x the direct ZeroMQ path")
    ratio = statistics.median(times["hand-driven websockets client"]) / statistics.median(
        times["kernelwire via jupyter_server (v1)"]
    )
    print(f"kernelwire's remote path vs the hand-driven WebSocket client: {ratio:.3f}x as fast")


if __name__ == "__main__":
    main()
