# Source: jupyter_client tests/test_multikernelmanager.py (TestKernelManager._run_lifecycle):
# start by id, is_alive, membership, restart, interrupt, shutdown.
import json
from subprocess import PIPE

from jupyter_client.multikernelmanager import MultiKernelManager

mkm = MultiKernelManager()
kid = mkm.start_kernel(kernel_name="python3", stdout=PIPE, stderr=PIPE)
alive = mkm.is_alive(kid)
member = kid in mkm
km = mkm.get_kernel(kid)
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
status = kc.execute_interactive("1+1", timeout=30)["content"]["status"]
kc.stop_channels()
mkm.restart_kernel(kid, now=True)
alive_after = mkm.is_alive(kid)
mkm.interrupt_kernel(kid)
mkm.shutdown_kernel(kid, now=True)
print(
    "RESULT",
    json.dumps(
        {
            "alive": alive,
            "member": member,
            "after": alive_after,
            "status": status,
            "gone": kid not in mkm,
        }
    ),
)
