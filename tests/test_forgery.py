"""Forged, replayed and broken messages are never delivered: a synthetic peer sends them.

A real kernel never sends these, so a tiny ZeroMQ publisher (fault injection) plays
the kernel's IOPub socket here.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator

import pytest
import zmq

from kernelwire import BlockingKernelClient
from kernelwire.connection_file import new_connection_info
from kernelwire.protocol.codec import Session


@pytest.fixture
def fake_iopub() -> Iterator[tuple[zmq.Socket[bytes], BlockingKernelClient, Session]]:
    info = new_connection_info()
    context = zmq.Context.instance()
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    pub.bind(info.url("iopub"))
    client = BlockingKernelClient(connection_info=info)
    client.start_channels(shell=False, stdin=False, control=False, hb=False)
    kernel_session = Session(info.key_bytes, check_replay=False)
    try:
        # Wait for the subscription to reach the publisher (ZeroMQ's slow joiner).
        deadline = time.monotonic() + 10
        while True:
            pub.send_multipart(
                kernel_session.encode(
                    kernel_session.message("status", {"execution_state": "probe"})
                )
            )
            try:
                client.get_iopub_msg(timeout=0.05)
                break
            except queue.Empty:
                assert time.monotonic() < deadline, "subscriber never connected"
        time.sleep(0.1)
        while client.iopub_channel.get_msgs():
            pass
        yield pub, client, kernel_session
    finally:
        client.stop_channels()
        pub.close(0)


def stream(session: Session, text: str) -> list[bytes]:
    return session.encode(session.message("stream", {"name": "stdout", "text": text}))


def drain(client: BlockingKernelClient) -> list[str]:
    texts = []
    while True:
        try:
            texts.append(client.get_iopub_msg(timeout=0.5)["content"]["text"])
        except queue.Empty:
            return texts


def test_forged_replayed_and_broken_messages_are_refused(
    fake_iopub: tuple[zmq.Socket[bytes], BlockingKernelClient, Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub, client, session = fake_iopub
    wrong_key = Session(b"not-the-key")
    good = stream(session, "good")
    tampered = list(stream(session, "tampered"))
    tampered[-1] = tampered[-1].replace(b"tampered", b"TAMPERED")
    unsigned = list(stream(session, "unsigned"))
    unsigned[1] = b""
    with caplog.at_level(logging.WARNING, logger="kernelwire"):
        pub.send_multipart(good)
        pub.send_multipart(stream(wrong_key, "wrong key"))
        pub.send_multipart(tampered)
        pub.send_multipart(unsigned)
        pub.send_multipart(good)  # replay of the first message
        pub.send_multipart(good[:4])  # truncated
        pub.send_multipart([b"garbage"])  # no delimiter
        pub.send_multipart(stream(session, "last"))
        assert drain(client) == ["good", "last"]
    assert client.router.rejected == 6
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 6
    assert any("signature" in text for text in refused)
    assert any("seen before" in text for text in refused)
    assert any("truncated" in text for text in refused)
    key = client.connection_info.key if client.connection_info else ""
    assert key and all(key not in text for text in refused)
    assert key not in repr(client.session) and key not in repr(client.connection_info)


def test_oversized_messages_are_refused(
    fake_iopub: tuple[zmq.Socket[bytes], BlockingKernelClient, Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub, client, session = fake_iopub
    client.engine.max_message_bytes = 10_000
    with caplog.at_level(logging.WARNING, logger="kernelwire"):
        pub.send_multipart(stream(session, "x" * 20_000))
        pub.send_multipart(stream(session, "small"))
        assert drain(client) == ["small"]
    assert any("oversized" in r.getMessage() for r in caplog.records)


def test_replies_to_another_session_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A peer answering on shell with another session's parent is not delivered."""
    info = new_connection_info()
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(info.url("shell"))
    client = BlockingKernelClient(connection_info=info)
    client.start_channels(iopub=False, stdin=False, control=False, hb=False)
    kernel_session = Session(info.key_bytes, check_replay=False)
    try:
        msg_id = client.kernel_info()
        identity, *frames = router.recv_multipart()
        _, request = kernel_session.decode(frames)
        assert request["msg_id"] == msg_id
        forged_parent = dict(request["header"], session="someone-else")
        forged = kernel_session.message("kernel_info_reply", {"status": "ok"}, parent=forged_parent)
        genuine = kernel_session.message("kernel_info_reply", {"status": "ok"}, parent=request)
        with caplog.at_level(logging.WARNING, logger="kernelwire"):
            router.send_multipart(kernel_session.encode(forged, [identity]))
            router.send_multipart(kernel_session.encode(genuine, [identity]))
            reply = client.get_shell_msg(timeout=10)
            assert reply["header"]["msg_id"] == genuine["header"]["msg_id"]
            with pytest.raises(queue.Empty):
                client.get_shell_msg(timeout=0.3)
        assert any("another session" in r.getMessage() for r in caplog.records)
    finally:
        client.stop_channels()
        router.close(0)


def test_unsolicited_control_and_stdin_messages_are_still_delivered() -> None:
    """Control and stdin are polled once the client sends there, or once someone asks
    for their messages: a message nobody asked for is not lost meanwhile."""
    info = new_connection_info()
    context = zmq.Context.instance()
    routers: dict[str, zmq.Socket[bytes]] = {}
    client = BlockingKernelClient(connection_info=info)
    try:
        for channel in ("control", "stdin"):
            router = routers[channel] = context.socket(zmq.ROUTER)
            router.linger = 0
            router.router_mandatory = True  # an unknown peer is an error, not a silent drop
            router.bind(info.url(channel))
        client.start_channels(shell=False, iopub=False, hb=False)
        kernel_session = Session(info.key_bytes, check_replay=False)
        sent = {
            "control": kernel_session.message("debug_event", {"event": "stopped"}),
            "stdin": kernel_session.message("input_request", {"prompt": "? ", "password": False}),
        }
        for channel, msg in sent.items():
            deadline = time.monotonic() + 10
            while True:  # until the client's DEALER has connected
                try:
                    routers[channel].send_multipart(
                        [client.session.bsession, *kernel_session.encode(msg)]
                    )
                    break
                except zmq.ZMQError:
                    assert time.monotonic() < deadline, f"{channel}: client never connected"
                    time.sleep(0.01)
        assert client.get_control_msg(timeout=5)["msg_id"] == sent["control"]["msg_id"]
        assert client.get_stdin_msg(timeout=5)["msg_id"] == sent["stdin"]["msg_id"]
    finally:
        client.stop_channels()
        for router in routers.values():
            router.close(0)
