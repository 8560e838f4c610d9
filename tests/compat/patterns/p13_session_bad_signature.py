# Source: jupyter_client tests/test_session.py (test_bad_signature / test_tampered):
# a message signed with another key is refused with a ValueError; a replay too.
import json

from jupyter_client.session import Session

sender, receiver = Session(key=b"one"), Session(key=b"two")
frames = sender.serialize(sender.msg("status", content={"execution_state": "idle"}))
_, rest = receiver.feed_identities(frames)
try:
    receiver.deserialize(rest)
    bad = "accepted"
except ValueError:
    bad = "ValueError"
same = Session(key=b"one")
same.deserialize(sender.feed_identities(frames)[1])
try:
    same.deserialize(sender.feed_identities(frames)[1])
    replay = "accepted"
except ValueError:
    replay = "ValueError"
print("RESULT", json.dumps({"bad": bad, "replay": replay}))
