# Source: jupyter_client tests/test_session.py (test_msg, msg_header, parent): the
# fields of a header, a reply's parent_header, and kernel-side session.msg(parent=).
import json

from jupyter_client.session import Session

session = Session(username="alice")
request = session.msg("execute_request", content={"code": "x"})
reply = session.msg("execute_reply", content={"status": "ok"}, parent=request)
header = session.msg_header("kernel_info_request")
print(
    "RESULT",
    json.dumps(
        {
            "keys": sorted(k for k in request if k != "buffers"),
            "header_keys": sorted(header),
            "username": request["header"]["username"],
            "parent": reply["parent_header"]["msg_id"] == request["msg_id"],
            "session_matches": request["header"]["session"] == session.session,
        }
    ),
)
