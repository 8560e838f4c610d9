# Source: jupyter_client tests/test_client.py (execute_interactive(timeout=...) raising
# TimeoutError) and nbclient's cell timeout.
import json

from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3")
try:
    kc.execute_interactive("import time; time.sleep(10)", timeout=0.5, output_hook=lambda m: None)
    raised = "none"
except TimeoutError:
    raised = "TimeoutError"
km.interrupt_kernel()
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"raised": raised}))
