# Source: jupyter_client tests/test_connect.py (test_write_connection_file): fname and
# cfg returned, the file's JSON equal to cfg.
import json
import os
import tempfile

from jupyter_client import write_connection_file

with tempfile.TemporaryDirectory() as td:
    fname = os.path.join(td, "kernel.json")
    out, cfg = write_connection_file(
        fname, ip="127.0.0.1", key=b"abc", transport="tcp", signature_scheme="hmac-sha256"
    )
    with open(out) as f:
        on_disk = json.load(f)
    print(
        "RESULT",
        json.dumps(
            {
                "same_path": out == fname,
                "equal": on_disk == cfg,
                "key": cfg["key"],
                "ports_set": all(
                    cfg[p] > 0
                    for p in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
                ),
                "mode": oct(os.stat(out).st_mode & 0o777),
            }
        ),
    )
