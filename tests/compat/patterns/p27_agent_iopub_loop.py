# Source: open-interpreter's jupyter language (interpreter/core/computer/terminal/
# languages/jupyter_language.py): KernelManager, start_kernel, client, start_channels,
# wait_for_ready, then one get_iopub_msg loop per cell. The first cell must not show
# what the kernel printed while it started (the debugpy warning).
import json
import os
import queue

from jupyter_client import KernelManager

env = dict(os.environ, PYTHONWARNINGS="default")
km = KernelManager(kernel_name="python3")
km.start_kernel(
    env=env, extra_arguments=["-c", "import sys; print('STARTUP NOISE'); sys.stdout.flush()"]
)
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
cells = []
for code in ["print('cell one')", "print('cell two')"]:
    msg_id = kc.execute(code)
    texts = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=30)
        except queue.Empty:
            break
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
        if (
            msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == msg_id
        ):
            break
    cells.append(texts)
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"cells": cells}))
