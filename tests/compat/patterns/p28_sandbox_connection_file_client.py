# Source: code-sandbox projects that attach to a kernel someone else started (e.g.
# jupyter kernel-gateway-less sandboxes): BlockingKernelClient(connection_file=...),
# load_connection_file(), start_channels(), execute with reply read from the shell.
import json
import time

from jupyter_client import BlockingKernelClient, KernelManager


def reply_to(msg_id, get):
    """The reply to msg_id (earlier replies, e.g. wait_for_ready's, are skipped)."""
    while True:
        msg = get(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = BlockingKernelClient(connection_file=km.connection_file)
kc.load_connection_file()
kc.start_channels()
for _attempt in range(10):
    # jupyter_client's wait_for_ready says "Kernel died before replying to kernel_info"
    # about a kernel still starting (no heartbeat yet): such projects retry.
    try:
        kc.wait_for_ready(timeout=60)
        break
    except RuntimeError:
        time.sleep(0.5)
msg_id = kc.execute("sum(range(10))")
reply = reply_to(msg_id, kc.get_shell_msg)
result = None
while True:
    msg = kc.get_iopub_msg(timeout=30)
    if msg["parent_header"].get("msg_id") != msg_id:
        continue
    if msg["msg_type"] == "execute_result":
        result = msg["content"]["data"]["text/plain"]
    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
        break
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"status": reply["content"]["status"], "result": result}))
