# Source: agent projects that hand a manager's connection info to a separate client
# (BlockingKernelClient(**km.get_connection_info()) or .load_connection_info(info)).
import json
import time

from jupyter_client import KernelManager
from jupyter_client.blocking import BlockingKernelClient

km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = BlockingKernelClient()
kc.load_connection_info(km.get_connection_info())
kc.start_channels()
for _attempt in range(10):
    # jupyter_client's wait_for_ready says "Kernel died before replying to kernel_info"
    # about a kernel still starting (no heartbeat yet): such projects retry.
    try:
        kc.wait_for_ready(timeout=60)
        break
    except RuntimeError:
        time.sleep(0.5)
texts = []
kc.execute_interactive(
    "print('via info')",
    timeout=30,
    output_hook=lambda m: (
        texts.append(m["content"].get("text")) if m["msg_type"] == "stream" else None
    ),
)
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"texts": texts}))
