# Source: jupyter_client tests/test_client.py (test_shutdown): kc.shutdown() sends a
# shutdown_request on control; the kernel exits.
import json
import time

from jupyter_client import KernelManager


def reply_to(msg_id, get):
    """The reply to msg_id (earlier replies, e.g. wait_for_ready's, are skipped)."""
    while True:
        msg = get(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
msg_id = kc.shutdown()
reply = reply_to(msg_id, kc.get_control_msg)
deadline = time.monotonic() + 30
while km.is_alive() and time.monotonic() < deadline:
    time.sleep(0.05)
exited = not km.is_alive()
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {
            "type": reply["msg_type"],
            "parent": reply["parent_header"]["msg_id"] == msg_id,
            "exited": exited,
        }
    ),
)
