# Source: jupyter_console ptshell.py (run_cell / handle_execute_reply /
# handle_iopub): execute, then poll shell with get_shell_msg(timeout=0.05) while
# kc.is_alive(), draining iopub with iopub_channel.msg_ready()/get_msg().
import json
import queue
import time

from jupyter_client import KernelManager

km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
msg_id = kc.execute("print('from console')")
reply = None
texts = []
deadline = time.monotonic() + 30
while kc.is_alive() and time.monotonic() < deadline:
    try:
        msg = kc.get_shell_msg(timeout=0.05)
    except queue.Empty:
        continue
    if msg["parent_header"].get("msg_id") == msg_id:
        reply = msg
        break
idle = False
while not idle and time.monotonic() < deadline:
    while kc.iopub_channel.msg_ready():
        sub = kc.iopub_channel.get_msg()
        if sub["msg_type"] == "stream":
            texts.append(sub["content"]["text"])
        if (
            sub["msg_type"] == "status"
            and sub["content"]["execution_state"] == "idle"
            and sub["parent_header"].get("msg_id") == msg_id
        ):
            idle = True
    time.sleep(0.01)
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"status": reply["content"]["status"], "texts": texts}))
