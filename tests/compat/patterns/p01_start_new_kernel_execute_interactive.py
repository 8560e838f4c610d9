# Source: jupyter_client tests/test_client.py (TestKernelClient.test_execute_interactive)
# and jupyter_client.manager.start_new_kernel's docstring.
import json

from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3")
outputs = []
reply = kc.execute_interactive(
    "print('hello')", timeout=30, output_hook=lambda m: outputs.append(m["msg_type"])
)
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"status": reply["content"]["status"], "outputs": outputs}))
