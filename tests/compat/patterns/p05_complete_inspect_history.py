# Source: jupyter_client tests/test_client.py (test_complete, test_inspect, test_history,
# test_is_complete): each request, then its reply from get_shell_msg.
import json

from jupyter_client.manager import start_new_kernel


def reply_to(msg_id, get):
    """The reply to msg_id (earlier replies, e.g. wait_for_ready's, are skipped)."""
    while True:
        msg = get(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


km, kc = start_new_kernel(kernel_name="python3")
kc.execute_interactive("abcdef_value = 1", timeout=30)
results = {}
for name, send in [
    ("complete", lambda: kc.complete("abcdef_v")),
    ("inspect", lambda: kc.inspect("abcdef_value")),
    ("history", lambda: kc.history(hist_access_type="tail", n=1)),
    ("is_complete", lambda: kc.is_complete("for i in range(3):")),
]:
    msg_id = send()
    reply = reply_to(msg_id, kc.get_shell_msg)
    results[name] = [reply["msg_type"], reply["content"]["status"]]
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps(results))
