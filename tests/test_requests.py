"""Every request of protocol 5.x gets its reply from a real ipykernel; stdin and comms work."""

from __future__ import annotations

import queue
import uuid
from typing import Any

import pytest

from kernelwire import BlockingKernelClient, KernelProcess, requests
from kernelwire.protocol.message import Message


@pytest.mark.parametrize(
    ("request_", "reply_type", "check"),
    [
        (requests.execute("a = 1"), "execute_reply", lambda c: c["status"] == "ok"),
        (requests.complete("impor"), "complete_reply", lambda c: "import" in c["matches"]),
        (requests.inspect("len"), "inspect_reply", lambda c: c["found"] is True),
        (requests.history(hist_access_type="tail", n=5), "history_reply", lambda c: "history" in c),
        (
            requests.kernel_info(),
            "kernel_info_reply",
            lambda c: c["language_info"]["name"] == "python",
        ),
        (requests.comm_info(), "comm_info_reply", lambda c: "comms" in c),
        (
            requests.is_complete("for i in x:"),
            "is_complete_reply",
            lambda c: c["status"] == "incomplete",
        ),
        (requests.interrupt(), "interrupt_reply", lambda c: c["status"] == "ok"),
        (requests.usage(), "usage_reply", lambda c: "kernel_cpu" in c or "cpu_count" in c or c),
        (requests.list_subshell(), "list_subshell_reply", lambda c: c["subshell_id"] == []),
        (
            requests.debug({"type": "request", "seq": 1, "command": "debugInfo", "arguments": {}}),
            "debug_reply",
            lambda c: c.get("command") == "debugInfo",
        ),
    ],
    ids=lambda v: v.msg_type if isinstance(v, requests.Request) else None,
)
def test_every_request_gets_its_reply(
    client: BlockingKernelClient, request_: requests.Request, reply_type: str, check: Any
) -> None:
    pending = client.submit(request_)
    reply = pending.reply(timeout=30)
    assert reply["msg_type"] == reply_type
    assert reply["parent_header"]["msg_id"] == pending.msg_id
    assert check(reply["content"]), reply["content"]
    pending.close()


def test_jupyter_client_style_reply_methods(client: BlockingKernelClient) -> None:
    assert client.execute("b = 2", reply=True, timeout=30)["content"]["status"] == "ok"
    assert client.complete("pri", reply=True, timeout=30)["content"]["matches"]
    assert client.inspect("print", reply=True, timeout=30)["content"]["found"]
    assert client.kernel_info(reply=True, timeout=30)["content"]["protocol_version"].startswith(
        "5."
    )
    assert "comms" in client.comm_info(reply=True, timeout=30)["content"]
    assert client.is_complete("1 +", reply=True, timeout=30)["content"]["status"] == "invalid"
    history = client.history(hist_access_type="tail", n=10, reply=True, timeout=30)
    assert history["msg_type"] == "history_reply"


def test_subshell_create_and_delete(client: BlockingKernelClient) -> None:
    created = client.create_subshell(reply=True, timeout=30)
    subshell_id = created["content"]["subshell_id"]
    listed = client.list_subshell(reply=True, timeout=30)["content"]["subshell_id"]
    assert subshell_id in listed
    pending = client.submit(
        requests.execute(
            "import threading; threading.current_thread().name", subshell_id=subshell_id
        )
    )
    results = [m for m in pending.iopub(30) if m["msg_type"] == "execute_result"]
    assert results and results[0]["parent_header"]["subshell_id"] == subshell_id
    deleted = client.delete_subshell(subshell_id, reply=True, timeout=30)
    assert deleted["content"]["status"] == "ok"
    assert subshell_id not in client.list_subshell(reply=True, timeout=30)["content"]["subshell_id"]


def test_shutdown_request_gets_its_reply(fresh_kernel: KernelProcess) -> None:
    with BlockingKernelClient(fresh_kernel.connection_file) as kc:
        kc.wait_for_ready(30)
        reply = kc.shutdown(reply=True, timeout=30)
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"]["restart"] is False
    fresh_kernel.proc.wait(30)


def test_input_answered_through_stdin_hook(client: BlockingKernelClient) -> None:
    prompts: list[str] = []
    outputs: list[Message] = []

    def answer(msg: Message) -> None:
        prompts.append(msg["content"]["prompt"])
        client.input("Ada")

    reply = client.execute_interactive(
        "name = input('name? ')\nprint('hello', name)",
        output_hook=outputs.append,
        stdin_hook=answer,
        timeout=30,
    )
    assert reply["content"]["status"] == "ok"
    assert prompts == ["name? "]
    # ipykernel may split one print into several stream messages (a timed flush).
    assert "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream") == (
        "hello Ada\n"
    )


def test_input_answered_through_get_stdin_msg_and_input(client: BlockingKernelClient) -> None:
    msg_id = client.execute("value = input('say: ')")
    request = client.get_stdin_msg(timeout=30)
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    assert request["content"]["prompt"] == "say: "
    client.input("forty-two")
    reply = client.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"
    assert (
        client.execute("value", reply=True, user_expressions={"v": "value"}, timeout=30)["content"][
            "user_expressions"
        ]["v"]["data"]["text/plain"]
        == "'forty-two'"
    )


ECHO_TARGET = """
from comm import get_comm_manager
def _open(comm, open_msg):
    comm.send({"opened": open_msg["content"]["data"]})
    @comm.on_msg
    def _echo(msg):
        comm.send({"echo": msg["content"]["data"]})
    @comm.on_close
    def _closed(msg):
        print("closed", msg["content"]["data"])
get_comm_manager().register_target("kw_echo", _open)
"""


def test_comm_open_msg_close(client: BlockingKernelClient) -> None:
    assert client.execute(ECHO_TARGET, reply=True, timeout=30)["content"]["status"] == "ok"
    comm_id = uuid.uuid4().hex

    def comm_traffic(request: requests.Request) -> list[Message]:
        return [
            m for m in client.submit(request).iopub(30) if m["msg_type"] in ("comm_msg", "stream")
        ]

    opened = comm_traffic(requests.comm_open(comm_id, "kw_echo", {"hello": 1}))
    assert [m["content"]["data"] for m in opened] == [{"opened": {"hello": 1}}]
    assert opened[0]["content"]["comm_id"] == comm_id
    info = client.comm_info("kw_echo", reply=True, timeout=30)["content"]["comms"]
    assert comm_id in info
    echoed = comm_traffic(requests.comm_msg(comm_id, {"n": 2}))
    assert [m["content"]["data"] for m in echoed] == [{"echo": {"n": 2}}]
    closed = comm_traffic(requests.comm_close(comm_id, {"bye": True}))
    assert "".join(m["content"]["text"] for m in closed) == "closed {'bye': True}\n"
    assert comm_id not in client.comm_info("kw_echo", reply=True, timeout=30)["content"]["comms"]


def test_two_executes_in_flight_each_get_their_own_outputs(client: BlockingKernelClient) -> None:
    slow = client.submit(
        requests.execute(
            "import time\nfor i in range(3):\n    print('slow', i)\n    time.sleep(0.05)"
        )
    )
    fast = client.submit(requests.execute("print('fast')\n'done'"))
    # Read the second request first: the first one's messages must wait for it, not vanish.
    fast_msgs = list(fast.iopub(30))
    slow_msgs = list(slow.iopub(30))
    assert all(m["parent_header"]["msg_id"] == fast.msg_id for m in fast_msgs)
    assert all(m["parent_header"]["msg_id"] == slow.msg_id for m in slow_msgs)
    text = lambda msgs: "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")  # noqa: E731
    assert text(slow_msgs) == "slow 0\nslow 1\nslow 2\n"
    assert text(fast_msgs) == "fast\n"
    assert (
        slow.reply(30)["content"]["status"] == "ok" and fast.reply(30)["content"]["status"] == "ok"
    )


def test_unclaimed_messages_are_kept_for_get_msg(client: BlockingKernelClient) -> None:
    plain = client.execute("print('plain')")
    claimed = client.submit(requests.execute("print('claimed')"))
    assert [m["msg_type"] for m in claimed.iopub(30)][-1] == "status"
    claimed.reply(30)
    got = []
    while True:
        try:
            got.append(client.get_iopub_msg(timeout=1))
        except queue.Empty:
            break
    # Other clients of this shared kernel broadcast on IOPub too: look at our session's.
    mine = [m for m in got if m["parent_header"].get("session") == client.session.session_id]
    assert {m["parent_header"]["msg_id"] for m in mine} == {plain}
    assert "".join(m["content"]["text"] for m in mine if m["msg_type"] == "stream") == "plain\n"
    assert client.get_shell_msg(timeout=10)["parent_header"]["msg_id"] == plain


def test_execute_interactive_leaves_other_requests_messages(client: BlockingKernelClient) -> None:
    other = client.execute("print('other')")
    outputs: list[Message] = []
    reply = client.execute_interactive("print('mine')", output_hook=outputs.append, timeout=30)
    assert reply["content"]["status"] == "ok"
    assert {m["parent_header"]["msg_id"] for m in outputs} == {reply["parent_header"]["msg_id"]}
    others = []
    while True:
        try:
            others.append(client.get_iopub_msg(timeout=1))
        except queue.Empty:
            break
    ours = [m for m in others if m["parent_header"].get("session") == client.session.session_id]
    assert "".join(m["content"]["text"] for m in ours if m["msg_type"] == "stream") == "other\n"
    assert client.get_shell_msg(timeout=10)["parent_header"]["msg_id"] == other


def test_channel_objects(client: BlockingKernelClient) -> None:
    msg_id = client.execute("1")
    reply = client.shell_channel.get_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    import time

    time.sleep(0.3)
    assert client.iopub_channel.msg_ready()
    msgs = client.iopub_channel.get_msgs()
    assert any(
        m["parent_header"].get("msg_id") == msg_id and m["content"].get("execution_state") == "idle"
        for m in msgs
    )
    assert not client.iopub_channel.msg_ready()
    # is_beating() says whether a pong came within time_to_dead, so a client starved of
    # CPU for that long since its last one is not beating: ask for a fresh one first.
    assert client.is_alive()
    assert client.hb_channel.is_beating()
    for channel in (
        client.shell_channel,
        client.iopub_channel,
        client.stdin_channel,
        client.control_channel,
    ):
        assert channel.is_alive()
