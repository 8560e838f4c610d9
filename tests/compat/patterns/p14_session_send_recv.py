# Source: jupyter_client tests/test_session.py (test_send / test_recv over a socket
# pair), and ipykernel's use of session.send(stream, msg_type, content, parent).
import json

import zmq
from jupyter_client.session import Session

ctx = zmq.Context()
a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
port = a.bind_to_random_port("tcp://127.0.0.1")
b.connect(f"tcp://127.0.0.1:{port}")
session = Session(key=b"k")
sent = session.send(a, "comm_msg", content={"data": {"x": 1}}, buffers=[b"raw"])
idents, msg = session.recv(b, mode=0)
empty = session.recv(b)  # nothing waiting, NOBLOCK
a.close()
b.close()
ctx.term()
print(
    "RESULT",
    json.dumps(
        {
            "type": msg["msg_type"],
            "content": msg["content"],
            "buffers": [bytes(x).decode() for x in msg["buffers"]],
            "same_id": msg["msg_id"] == sent["msg_id"],
            "empty": list(empty),
        }
    ),
)
