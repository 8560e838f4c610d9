# Source: jupyter_client tests/test_client.py (test_kernel_info): kernel_info() returns
# a msg_id; the reply is read with get_shell_msg.
import json

from jupyter_client.manager import start_new_kernel


def reply_to(msg_id, get):
    """The reply to msg_id (earlier replies, e.g. wait_for_ready's, are skipped)."""
    while True:
        msg = get(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


km, kc = start_new_kernel(kernel_name="python3")
msg_id = kc.kernel_info()
reply = reply_to(msg_id, kc.get_shell_msg)
same_parent = reply["parent_header"]["msg_id"] == msg_id
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {
            "type": reply["msg_type"],
            "parent": same_parent,
            "language": reply["content"]["language_info"]["name"],
        }
    ),
)
