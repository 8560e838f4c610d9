# Source: jupyter_client tests/test_kernelspec.py (test_find_kernel_specs,
# test_get_kernel_spec, NoSuchKernel) and jupyter kernelspec list.
import json

import jupyter_client
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel, get_kernel_spec

specs = jupyter_client.kernelspec.find_kernel_specs()
spec = get_kernel_spec("python3")
ksm = KernelSpecManager()
all_specs = ksm.get_all_specs()
try:
    ksm.get_kernel_spec("no-such-kernel-xyz")
    missing = "found"
except NoSuchKernel:
    missing = "NoSuchKernel"
print(
    "RESULT",
    json.dumps(
        {
            "python3": "python3" in specs,
            "language": spec.language,
            "argv0": spec.argv[0] in ("python", "python3") or spec.argv[0].endswith("python"),
            "all": sorted(all_specs) == sorted(specs),
            "spec_keys": sorted(all_specs["python3"]["spec"]),
            "missing": missing,
        }
    ),
)
