# Source: jupyter_console / qtconsole draining queues: get_shell_msg(timeout=0) and
# get_iopub_msg(timeout=...) raise queue.Empty when nothing is there.
import json
import queue

from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3")
results = {}
for name, call in [
    ("shell", lambda: kc.get_shell_msg(timeout=0)),
    ("iopub", lambda: kc.get_iopub_msg(timeout=0.2)),
]:
    try:
        while True:
            call()
    except queue.Empty:
        results[name] = "Empty"
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps(results))
