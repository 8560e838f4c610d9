# Source: jupyter_client tests/test_client.py (test_input_request): execute_interactive
# with a stdin_hook that answers through kc.input.
import json

from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3")
prompts = []


def stdin_hook(msg):
    prompts.append(msg["content"]["prompt"])
    kc.input("typed")


outputs = []
reply = kc.execute_interactive(
    "x = input('name? '); print(x)",
    allow_stdin=True,
    timeout=30,
    stdin_hook=stdin_hook,
    output_hook=lambda m: (
        outputs.append(m["content"].get("text")) if m["msg_type"] == "stream" else None
    ),
)
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps({"prompts": prompts, "outputs": outputs, "status": reply["content"]["status"]}),
)
