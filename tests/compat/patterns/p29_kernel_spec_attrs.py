# Source: nbclient (km.ipykernel, km.kernel_name) and jupyter_server
# (km.kernel_spec.language / display_name) reading a manager's spec before start.
import json

from jupyter_client import KernelManager

km = KernelManager(kernel_name="python3")
print(
    "RESULT",
    json.dumps(
        {
            "ipykernel": km.ipykernel,
            "name": km.kernel_name,
            "language": km.kernel_spec.language,
            "display": km.kernel_spec.display_name,
            "has_kernel": km.has_kernel,
        }
    ),
)
