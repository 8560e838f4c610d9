# Source: jupyter_console completer.py (ZMQCompleter.complete_request): complete(),
# then get_shell_msg(timeout=...) and the reply's matches.
import json

from jupyter_client import KernelManager


def reply_to(msg_id, get):
    """The reply to msg_id (earlier replies, e.g. wait_for_ready's, are skipped)."""
    while True:
        msg = get(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
kc.execute_interactive("zzz_alpha = 1; zzz_beta = 2", timeout=30)
msg_id = kc.complete(code="zzz_", cursor_pos=4)
msg = reply_to(msg_id, kc.get_shell_msg)
kc.stop_channels()
km.shutdown_kernel(now=True)
print(
    "RESULT",
    json.dumps(
        {
            "parent": msg["parent_header"]["msg_id"] == msg_id,
            "matches": sorted(m for m in msg["content"]["matches"] if m.startswith("zzz_")),
            "cursor_start": msg["content"]["cursor_start"],
        }
    ),
)
