# Source: nbclient client.py (async_start_new_kernel, async_start_new_kernel_client,
# async_execute_cell, _async_poll_output_msg): AsyncKernelManager, km.client(),
# wait_for_ready, execute, iopub_channel.get_msg until idle, shell_channel.get_msg.
import asyncio
import json

from jupyter_client import AsyncKernelManager


async def main():
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"], cwd=".")
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    kc.allow_stdin = False
    outputs = []
    for code in ["print('a')", "2 + 3", "import sys; print('e', file=sys.stderr)"]:
        msg_id = kc.execute(code, store_history=True, stop_on_error=False)
        parts = []  # one cell's text: a kernel may split a stream write in two messages
        while True:
            msg = await kc.iopub_channel.get_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] in ("stream", "execute_result"):
                c = msg["content"]
                parts.append(c.get("text") or c["data"]["text/plain"])
        outputs.append("".join(parts))
        while True:  # nbclient's _async_poll_for_reply skips replies to other requests
            reply = await kc.shell_channel.get_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
    kc.stop_channels()
    if await km.is_alive():
        await km.shutdown_kernel(now=False)
    await km.cleanup_resources()
    return {"outputs": outputs, "has_kernel": km.has_kernel}


print("RESULT", json.dumps(asyncio.run(main())))
