# Source: jupyter_client tests/test_kernelmanager.py (test_signal_kernel / interrupt) and
# nbclient's timeout handling (km.interrupt_kernel, then the reply with an error).
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
msg_id = kc.execute("import time\nprint('started', flush=True)\ntime.sleep(30)")
while True:
    msg = kc.get_iopub_msg(timeout=30)
    if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id:
        break
time.sleep(0.2)
km.interrupt_kernel()
reply = reply_to(msg_id, kc.get_shell_msg)
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT", json.dumps({"status": reply["content"]["status"], "ename": reply["content"]["ename"]})
)
