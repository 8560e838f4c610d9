# Source: jupyter_client tests/test_kernelmanager.py (TestKernelManager.test_lifecycle):
# start, is_alive, restart_kernel(now=True), interrupt, shutdown, context closed.
import json
from subprocess import PIPE

from jupyter_client import KernelManager

km = KernelManager(kernel_name="python3")
km.start_kernel(stdout=PIPE, stderr=PIPE)
alive = km.is_alive()
km.restart_kernel(now=True)
alive_after_restart = km.is_alive()
km.interrupt_kernel()
assert isinstance(km, KernelManager)
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {
            "alive": alive,
            "restarted": alive_after_restart,
            "after_shutdown": km.is_alive(),
            "has_kernel": km.has_kernel,
            "context_closed": km.context.closed,
        }
    ),
)
