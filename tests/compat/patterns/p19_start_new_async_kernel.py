# Source: jupyter_client tests/test_client.py (TestAsyncKernelClient) via
# jupyter_client.manager.start_new_async_kernel.
import asyncio
import json

from jupyter_client.manager import start_new_async_kernel


async def main():
    km, kc = await start_new_async_kernel(kernel_name="python3")
    texts = []
    reply = await kc.execute_interactive(
        "for i in range(3): print(i)",
        timeout=30,
        output_hook=lambda m: (
            texts.append(m["content"]["text"]) if m["msg_type"] == "stream" else None
        ),
    )
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return {"status": reply["content"]["status"], "text": "".join(texts)}


print("RESULT", json.dumps(asyncio.run(main())))
