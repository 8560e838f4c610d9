# Source: jupyter_server's kernel manager (km.kernel_id, km.connection_file) and
# jupyter_client.KernelManager.client(**kwargs) building the client from
# get_connection_info(session=True).
import json
import os

from jupyter_client import KernelManager

km = KernelManager(kernel_name="python3")
km.start_kernel(kernel_id="abc-123")
info = km.get_connection_info()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
status = kc.execute_interactive("1", timeout=30, output_hook=lambda m: None)["content"]["status"]
kc.stop_channels()
file_existed = os.path.exists(km.connection_file)
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {
            "kernel_id": km.kernel_id,
            "file": file_existed,
            "status": status,
            "info_keys": sorted(info),
            "ports": all(info[k] for k in info if k.endswith("_port")),
        }
    ),
)
