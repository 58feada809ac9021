"""Issue 14: a replay from ``0-0`` streams the history in bounded pages. Several concurrent subscribers
replaying a large history keep the broker's memory bounded, and still get every message once, in order,
then the live ones."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis

from app.channels import channel_key
from app.client import CobraClient
from app.models import App, AppSettings, Role
from tests.support.apps import wait_app_known

SECRET = "paged-secret-0123456789abcdefghijk"
MESSAGES = 4000
PAD = "p" * 16000  # 4000 x ~16 KB = ~64 MB of history


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.fixture
def big_history_app(store):
    key = f"paged-{uuid.uuid4().hex[:8]}"
    store.put_app(
        App(
            key=key,
            roles={"r": Role(name="r", secret=SECRET)},
            settings=AppSettings(history_max_length=MESSAGES + 100, history_max_bytes=0),
        )
    )
    yield key
    store.delete_app(key)


def test_concurrent_replays_of_a_large_history_are_paged_exact_and_switch_to_live(
    broker_factory, big_history_app
):
    broker = broker_factory()
    key = big_history_app
    wait_app_known(broker, key, SECRET)
    with CobraClient(broker.endpoint, key, "r", SECRET, timeout=30) as publisher:
        for i in range(MESSAGES):
            publisher.send(
                {"action": "rtm/publish", "id": i, "body": {"channel": "h", "message": {"n": i, "p": PAD}}}
            )
        while publisher.request("rtm/read", {"channel": "h"})["body"]["message"]["n"] != MESSAGES - 1:
            pass
        before = _rss_kb(broker.process.pid)
        peak = [before]
        results: dict[int, list[int]] = {}
        clients = [CobraClient(broker.endpoint, key, "r", SECRET, timeout=60) for _ in range(4)]
        for client in clients:
            client.send({"action": "rtm/subscribe", "id": 1, "body": {"channel": "h", "position": "0-0"}})

        def collect(index: int, client: CobraClient) -> None:
            seen: list[int] = []
            while len(seen) < MESSAGES + 20:
                try:
                    pdu = client.receive(timeout=60)
                except TimeoutError:
                    results[index] = seen
                    raise
                if pdu["action"] == "rtm/subscription/data":
                    seen += [m["n"] for m in pdu["body"]["messages"]]
                assert pdu["action"] in ("rtm/subscribe/ok", "rtm/subscription/data"), pdu
            results[index] = seen

        threads = [threading.Thread(target=collect, args=pair) for pair in enumerate(clients)]
        for thread in threads:
            thread.start()
        # Live messages while the replays run: each must come once, after the history.
        for i in range(MESSAGES, MESSAGES + 20):
            publisher.publish("h", {"n": i, "p": "live"})
            peak.append(_rss_kb(broker.process.pid))
        while any(thread.is_alive() for thread in threads):
            peak.append(_rss_kb(broker.process.pid))
            for thread in threads:
                thread.join(0.05)
        for client in clients:
            client.close()
    assert sorted(results) == [0, 1, 2, 3]
    for seen in results.values():
        assert seen == list(range(MESSAGES + 20))  # every message once, in order, live after history
    # Measured on this test: loading the ~64 MB history whole grew the process by ~26 MB beyond what the
    # publishes had already made it allocate (four raw reads and their frames at once); paged, by well
    # under 1 MB (a page of ~1 MB and a paced send queue per subscriber).
    growth_mb = (max(peak) - before) / 1024
    assert growth_mb < 12, f"broker RSS grew by {growth_mb:.0f} MB during four replays"


TRIMMED_HISTORY = 1500  # x ~16 KB: ~24 MB, far more than a paused client and its sockets hold (~6 MB)
KEPT = 100


def _replayed_until(client: CobraClient, last: int) -> list[tuple[str, Any]]:
    """("n", n) per message received and (action, body) per notice, until message ``last`` arrived."""
    events: list[tuple[str, Any]] = []
    while True:
        pdu = client.receive(timeout=60)
        if pdu["action"] == "rtm/subscription/data":
            numbers = [m["n"] for m in pdu["body"]["messages"]]
            events += [("n", n) for n in numbers]
            if last in numbers:
                return events
        elif pdu["action"] in ("rtm/subscription/info", "rtm/subscription/error"):
            events.append((pdu["action"], pdu["body"]))
        else:
            assert pdu["action"] == "rtm/subscribe/ok", pdu


@pytest.mark.parametrize("fast_forward", [True, False], ids=["fast_forward", "plain"])
def test_a_replay_whose_history_is_trimmed_meanwhile_reports_the_gap(
    broker, big_history_app, redis_server, fast_forward
):
    key, channel = big_history_app, f"trim-{fast_forward}"
    wait_app_known(broker, key, SECRET)
    with CobraClient(broker.endpoint, key, "r", SECRET, timeout=30) as publisher:
        for i in range(TRIMMED_HISTORY):
            body = {"channel": channel, "message": {"n": i, "p": PAD}}
            publisher.send({"action": "rtm/publish", "id": i, "body": body})
        last = TRIMMED_HISTORY - 1
        while publisher.request("rtm/read", {"channel": channel})["body"]["message"]["n"] != last:
            pass
    with CobraClient(broker.endpoint, key, "r", SECRET, timeout=60) as subscriber:
        subscriber.send(
            {
                "action": "rtm/subscribe",
                "id": 1,
                "body": {"channel": channel, "position": "0-0", "fast_forward": fast_forward},
            }
        )
        first = subscriber.receive(timeout=60)
        assert first["action"] == "rtm/subscribe/ok", first
        first = subscriber.receive(timeout=60)  # the replay runs; this client reads no more for now
        assert [m["n"] for m in first["body"]["messages"]] == [0], first
        # The channel is trimmed under the paused replay, to its newest KEPT messages.
        r = redis.Redis.from_url(redis_server.url)
        r.xtrim(channel_key(key, channel), maxlen=KEPT, approximate=False)
        oldest_kept = r.xrange(channel_key(key, channel), count=1)[0][0].decode()
        events = _replayed_until(subscriber, last)
    notices = [index for index, (kind, _) in enumerate(events) if kind != "n"]
    assert len(notices) == 1, [event for event in events if event[0] != "n"]
    before = [n for _, n in events[: notices[0]]]
    after = [n for _, n in events[notices[0] + 1 :]]
    assert before == list(range(1, len(before) + 1))  # every message up to the trim, in order
    assert after == list(range(TRIMMED_HISTORY - KEPT, TRIMMED_HISTORY))  # then the oldest retained on
    kind, body = events[notices[0]]
    assert body["position"] == oldest_kept and body["messages"] == []
    if fast_forward:
        assert kind == "rtm/subscription/info" and body["info"] == "fast_forward"
    else:
        assert kind == "rtm/subscription/error" and body["code"] == "expired_position"
