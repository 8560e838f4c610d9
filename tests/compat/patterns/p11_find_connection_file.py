# Source: jupyter_client tests/test_connect.py (test_find_connection_file): by name in a
# folder given as a single string, by glob, by abspath.
import json
import os
import tempfile

from jupyter_client import find_connection_file, write_connection_file

with tempfile.TemporaryDirectory() as td:
    fname, _ = write_connection_file(os.path.join(td, "kernel-1234.json"), key=b"k")
    found = [
        find_connection_file("kernel-1234.json", path=td) == fname,
        find_connection_file("kernel-*.json", path=[td]) == fname,
        find_connection_file("1234", path=td) == fname,
        find_connection_file(fname) == fname,
    ]
    try:
        find_connection_file("kernel-9999.json", path=td)
        missing = "found"
    except OSError:
        missing = "OSError"
    print("RESULT", json.dumps({"found": found, "missing": missing}))
