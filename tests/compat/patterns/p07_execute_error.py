# Source: nbclient client.py (_check_raise_for_error): the execute_reply of a failing
# cell carries ename/evalue; the error output arrives on IOPub.
import json

from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3")
errors = []
reply = kc.execute_interactive(
    "1/0",
    timeout=30,
    output_hook=lambda m: (
        errors.append(m["content"]["ename"]) if m["msg_type"] == "error" else None
    ),
)
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {"status": reply["content"]["status"], "ename": reply["content"]["ename"], "iopub": errors}
    ),
)
