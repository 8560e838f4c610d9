# Source: jupyter_server's kernel websocket handler and nbclient's cleanup: an
# AsyncKernelManager restarted with the async client kept; kernel_info after restart.
import asyncio
import json

from jupyter_client import AsyncKernelManager


async def main():
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    await km.restart_kernel(now=True)
    await kc.wait_for_ready(timeout=60)
    msg_id = kc.kernel_info()
    while True:
        reply = await kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    alive = await km.is_alive()
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return {"type": reply["msg_type"], "alive": alive}


print("RESULT", json.dumps(asyncio.run(main())))
