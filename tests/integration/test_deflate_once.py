"""With permessage-deflate, one publish is compressed once for all its subscribers (SECURITY.md): every
push carries the same compressed bytes of the shared message part after its own small uncompressed prefix,
and third-party inflaters (python-websockets, zlib) read every push back exactly."""

from __future__ import annotations

import json
import zlib

from app.client import CobraClient
from bench.wsclient import OP_TEXT, RawWebSocket, authenticate, parse_frames, pdu
from tests.conftest import TEST_APP

DEFLATE = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
MESSAGE = {"text": "deflate me " * 200}  # ~2 KB: over deflate_min_size


def _raw_frames(ws: RawWebSocket, count: int) -> list[tuple[int, bytes]]:
    """(first header byte, payload) of the next ``count`` frames, as sent (still compressed)."""
    ws.sock.settimeout(10)
    buffer = bytearray(ws.buffer)
    while True:
        found, _ = parse_frames(buffer)
        if len(found) >= count:
            break
        chunk = ws.sock.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk
    frames, pos = [], 0
    for _, begin, end in found[:count]:
        frames.append((buffer[pos], bytes(buffer[begin:end])))
        pos = end
    return frames


def _common_suffix(payloads: list[bytes]) -> int:
    n = 0
    while all(len(p) > n for p in payloads) and len({p[-1 - n] for p in payloads}) == 1:
        n += 1
    return n


def test_subscribers_of_one_publish_share_its_compressed_bytes(broker, test_apps):
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    ws = RawWebSocket(broker.port, TEST_APP, DEFLATE, timeout=10)
    try:
        authenticate(ws, "pubsub", secret)
        ids = [f"s{i}" for i in range(5)]
        for i, sid in enumerate(ids):
            ws.send_frame(OP_TEXT, pdu("rtm/subscribe", 10 + i, {"channel": "once", "subscription_id": sid}))
            assert ws.recv_json()["action"] == "rtm/subscribe/ok"
        with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as publisher:
            publisher.publish("once", MESSAGE)
        frames = _raw_frames(ws, len(ids))
        payloads = [payload for _, payload in frames]
        pushes = []
        for first, payload in frames:
            assert first & 0x40, "a 2 KB push was not compressed"
            pushes.append(zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff"))
        bodies = [json.loads(push)["body"] for push in pushes]
        assert sorted(body["subscription_id"] for body in bodies) == ids
        assert all(body["messages"] == [MESSAGE] for body in bodies)
        # everything after each push's own short prefix is the same compressed bytes: compressed once
        shared = _common_suffix(payloads)
        assert shared >= min(len(p) for p in payloads) - 100, (shared, [len(p) for p in payloads])
    finally:
        ws.close()


def test_python_websockets_inflates_shared_pushes(broker, test_apps):
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as subscriber:
        assert subscriber.ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        for sid in ("a", "b", "c"):
            subscriber.subscribe("once-ws", subscription_id=sid)
        with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as publisher:
            for n in range(3):
                publisher.publish("once-ws", dict(MESSAGE, n=n))
        got = [subscriber.next_push(timeout=10)["body"] for _ in range(9)]
        assert sorted((b["subscription_id"], b["messages"][0]["n"]) for b in got) == [
            (sid, n) for sid in ("a", "b", "c") for n in range(3)
        ]
        assert all(b["messages"][0]["text"] == MESSAGE["text"] for b in got)
