# Source: jupyter_client tests (utils: `with run_kernel(kernel_name=...) as kc`), the
# context manager in jupyter_client.manager.
import json

from jupyter_client.manager import run_kernel

with run_kernel(kernel_name="python3") as kc:
    reply = kc.execute_interactive(
        "x = 6 * 7", timeout=30, user_expressions={"x": "x"}, output_hook=lambda m: None
    )
print(
    "RESULT",
    json.dumps(
        {
            "status": reply["content"]["status"],
            "x": reply["content"]["user_expressions"]["x"]["data"]["text/plain"],
        }
    ),
)
