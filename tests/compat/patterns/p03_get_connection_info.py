# Source: jupyter_client tests/test_kernelmanager.py (test_get_connect_info): the keys
# of a manager's connection info before its kernel starts.
import json

from jupyter_client import KernelManager

km = KernelManager()
info = km.get_connection_info()
print("RESULT", json.dumps({"keys": sorted(info.keys())}))
