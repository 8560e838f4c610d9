# Source: jupyter_client tests/test_multikernelmanager.py (TestAsyncKernelManager), the
# way jupyter_server's kernel manager drives it.
import asyncio
import json

from jupyter_client.multikernelmanager import AsyncMultiKernelManager


async def main():
    mkm = AsyncMultiKernelManager()
    kid = await mkm.start_kernel(kernel_name="python3")
    ids = mkm.list_kernel_ids()
    await mkm.restart_kernel(kid, now=True)
    await mkm.shutdown_all(now=True)
    return {"listed": ids == [kid], "after": mkm.list_kernel_ids()}


print("RESULT", json.dumps(asyncio.run(main())))
