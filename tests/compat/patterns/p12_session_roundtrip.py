# Source: jupyter_client tests/test_session.py (test_serialize, test_feed_identities,
# test_sign): msg, serialize with an identity, feed_identities, deserialize.
import json

from jupyter_client.session import Session

session = Session(key=b"secret")
msg = session.msg("execute_request", content={"code": "1"})
frames = session.serialize(msg, ident=b"client-1")
idents, rest = session.feed_identities(frames)
back = Session(key=b"secret").deserialize(rest)
print(
    "RESULT",
    json.dumps(
        {
            "idents": [i.decode() for i in idents],
            "msg_id": back["msg_id"] == msg["msg_id"],
            "type": back["msg_type"],
            "content": back["content"],
            "signature": frames[2] == session.sign(frames[3:7]),
            "session": back["header"]["session"] == session.session,
        }
    ),
)
