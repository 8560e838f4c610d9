# Source: jupyter_client tests/test_client.py (test_user_expressions) and IPython's
# %load-like silent execution (silent=True: no execute_input, no history).
import json

from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3")
seen = []
reply = kc.execute_interactive(
    "q = 5",
    silent=True,
    timeout=30,
    user_expressions={"double": "q * 2"},
    output_hook=lambda m: seen.append(m["msg_type"]),
)
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {
            "status": reply["content"]["status"],
            "double": reply["content"]["user_expressions"]["double"]["data"]["text/plain"],
            "execute_input": "execute_input" in seen,
        }
    ),
)
