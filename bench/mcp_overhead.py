"""What ``kernelwire mcp`` adds to a run: a ``run_code`` tool call of ``pass`` over stdio
against ``run(client, "pass")`` (what ``Kernel.run`` does) on the same kernel.

The server is started as an MCP client starts it (``python -m kernelwire mcp``, driven
by the SDK's own client); its kernel's connection file is found in a private runtime
folder and a kernelwire client connects to it directly. Calls alternate, so machine
noise hits both alike; the difference of the medians is the server's overhead per call
(goal: at most 5 ms).

    python bench/mcp_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import TextContent

from _common import table
from kernelwire import BlockingKernelClient
from kernelwire.execution import run


async def main(n: int) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="kernelwire-bench-mcp-"))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kernelwire", "mcp"],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
    )
    rows: dict[str, list[float]] = {"run_code tool call (stdio)": [], "run(client, 'pass')": []}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        started = await session.call_tool("start_kernel", {})
        reply = started.content[0]
        assert isinstance(reply, TextContent), reply
        kernel_id = json.loads(reply.text)["kernel_id"]
        (connection_file,) = runtime.glob("kernel-*.json")
        with BlockingKernelClient(str(connection_file)) as client:
            client.wait_for_ready(60)

            def direct() -> None:
                run(client, "pass", timeout=60)

            for i in range(n + 5):
                begin = time.perf_counter()
                await session.call_tool("run_code", {"kernel_id": kernel_id, "code": "pass"})
                tool = time.perf_counter() - begin
                begin = time.perf_counter()
                await anyio.to_thread.run_sync(direct)
                plain = time.perf_counter() - begin
                if i >= 5:  # warm-up
                    rows["run_code tool call (stdio)"].append(tool)
                    rows["run(client, 'pass')"].append(plain)
    table(rows, "ms", 1000)
    overhead = statistics.median(rows["run_code tool call (stdio)"]) - statistics.median(
        rows["run(client, 'pass')"]
    )
    print(f"server overhead per call (difference of medians): {overhead * 1000:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 calls each instead of 300")
    args = parser.parse_args()
    anyio.run(main, 50 if args.quick else 300)
