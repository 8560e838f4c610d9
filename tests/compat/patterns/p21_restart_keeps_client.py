# Source: jupyter_client tests/test_kernelmanager.py (test_restart / signaltest
# lifecycle) and the issue: a client kept across km.restart_kernel(now=True) keeps
# working; the namespace is gone.
import json

from jupyter_client import KernelManager

km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
kc.execute_interactive("a = 1", timeout=30)
km.restart_kernel(now=True)
kc.wait_for_ready(timeout=60)
reply = kc.execute_interactive("print(a)", timeout=30, output_hook=lambda m: None)
again = kc.execute_interactive("b = 2", timeout=30)["content"]["status"]
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"ename": reply["content"].get("ename"), "again": again}))
