# Source: jupyter_client tests/test_connect.py (test_write_connection_file with given
# ports) and ipykernel's write_connection_file call (ports given by keyword).
import json
import os
import tempfile

from jupyter_client.connect import write_connection_file

with tempfile.TemporaryDirectory() as td:
    fname, cfg = write_connection_file(
        os.path.join(td, "k.json"),
        shell_port=51001,
        iopub_port=51002,
        stdin_port=51003,
        hb_port=51004,
        control_port=51005,
        ip="127.0.0.1",
        key=b"",
        kernel_name="python3",
    )
    print("RESULT", json.dumps({k: cfg[k] for k in sorted(cfg)}))
