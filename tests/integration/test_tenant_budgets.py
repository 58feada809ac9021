"""Issue 14, "with one tenant's secret": the per-app Redis budgets and the per-connection filter cap, each
attacked through a real broker process and checked in the real Redis behind it."""

from __future__ import annotations

import http.client
import time

import orjson
import pytest
import redis

from app.channels import channel_key
from app.client import CobraClient
from app.engine.history import accounting_key_names
from app.http_signing import sign
from tests.support.apps import configured_apps
from tests.support.processes import wait_until

SECRET = "budget-secret-0123456789abcdefghij"


@pytest.fixture
def budget_app(store):
    """An app with its own settings; returns a function that applies them and waits for the broker."""
    with configured_apps(store, "budget", SECRET) as configure:
        yield configure


def _app_keys(redis_url: str, app_key: str) -> list[bytes]:
    return list(redis.Redis.from_url(redis_url).scan_iter(match=f"{app_key}::*", count=10_000))


def _http_publish(broker, app_key: str, body: dict) -> tuple[int, dict]:
    data = orjson.dumps(body)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Cobra-Role": "r",
        "X-Cobra-Timestamp": timestamp,
        "X-Cobra-Signature": sign(SECRET, timestamp, data),
    }
    connection = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=30)
    try:
        connection.request("POST", f"/v2/publish?appkey={app_key}", body=data, headers=headers)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def test_a_publish_naming_99000_channels_is_refused_and_creates_no_stream(broker, budget_app, redis_server):
    key = budget_app(broker)
    channels = [f"c{i}" for i in range(99_000)]  # ~790 KB of JSON, under the 1 MB frame limit
    with CobraClient(broker.endpoint, key, "r", SECRET, timeout=30) as client:
        reply = client.request("rtm/publish", {"channels": channels, "message": 1}, check=False)
        assert reply["action"] == "rtm/publish/error"
        assert reply["body"]["code"] == "message_too_large"
        assert "99000 channels" in reply["body"]["error"] and "100" in reply["body"]["error"]
        assert client.publish("ok", 1)["channels"] == ["ok"]  # the connection goes on
    status, document = _http_publish(broker, key, {"channels": channels, "message": 1})
    assert status == 413 and document["code"] == "message_too_large"
    assert _app_keys(redis_server.url, key) == [f"{key}::ok".encode()]


def test_an_app_may_raise_its_channel_count_per_publish(broker, budget_app):
    key = budget_app(broker, max_publish_channels=300)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        assert (
            len(
                client.request("rtm/publish", {"channels": [f"c{i}" for i in range(300)], "message": 1})[
                    "body"
                ]["channels"]
            )
            == 300
        )
        reply = client.request(
            "rtm/publish", {"channels": [f"c{i}" for i in range(301)], "message": 1}, check=False
        )
        assert reply["body"]["code"] == "message_too_large"


def test_a_500_kb_channel_name_is_refused_on_publish_subscribe_and_http(broker, budget_app, redis_server):
    key = budget_app(broker)
    name = "n" * 500_000
    with CobraClient(broker.endpoint, key, "r", SECRET, timeout=30) as client:
        for action, body in (
            ("rtm/publish", {"channel": name, "message": 1}),
            ("rtm/publish", {"channels": ["fine", name], "message": 1}),
            ("rtm/subscribe", {"channel": name}),
        ):
            reply = client.request(action, body, check=False)
            assert reply["action"] == f"{action}/error"
            assert reply["body"]["code"] == "bad_schema"
            assert "over the limit of 1024" in reply["body"]["error"]
        assert client.publish("n" * 1024, 1)["channels"] == ["n" * 1024]  # exactly at the limit: fine
    status, document = _http_publish(broker, key, {"channel": name, "message": 1})
    assert status == 400 and document["code"] == "bad_schema"
    assert _app_keys(redis_server.url, key) == [f"{key}::{'n' * 1024}".encode()]


def test_200_compressible_1_mb_messages_keep_only_the_channel_byte_budget(broker, budget_app, redis_server):
    key = budget_app(broker, history_max_bytes=3_000_000)
    message = "a" * 1_000_000  # ~1 KB on the wire with deflate, 1 MB in Redis
    with CobraClient(broker.endpoint, key, "r", SECRET, timeout=60) as client:
        positions = [client.publish("big", message)["position"] for _ in range(200)]
        assert len(set(positions)) == 200
        last = client.read("big")
        assert last["position"] == positions[-1] and last["message"] == message
    r = redis.Redis.from_url(redis_server.url)
    stream = channel_key(key, "big")
    kept = r.xrange(stream)
    assert [entry_id.decode() for entry_id, _ in kept] == positions[-len(kept) :]  # the newest, in order
    assert 1 <= len(kept) <= 3  # 3 x 1,000,002 bytes of JSON would be over 3,000,000
    assert r.memory_usage(stream) < 8_000_000  # not 200 MB
    info = r.xinfo_stream(stream)
    assert info["length"] == len(kept)


def test_a_replayed_channel_is_still_exact_after_byte_trimming(broker, budget_app):
    key = budget_app(broker, history_max_bytes=10_000)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        positions = [client.publish("c", {"n": i, "pad": "x" * 900})["position"] for i in range(30)]
        sub = client.subscribe("c", position="0-0")
        assert sub["position"] == positions[-1]
        seen = []
        while len(seen) < 10:
            push = client.next_push(timeout=10)
            if push["action"] == "rtm/subscription/data":
                seen += [m["n"] for m in push["body"]["messages"]]
        assert seen == list(range(20, 30))  # ~920 bytes each: the newest ten fit in 10,000 bytes


def test_an_app_history_budget_refuses_publishes_past_it_and_frees_when_history_expires(
    broker, budget_app, redis_server
):
    key = budget_app(broker, app_history_max_bytes=200_000, history_max_age=2)
    message = "m" * 60_000
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        for i in range(3):
            client.publish(f"ch{i}", message)  # 3 x 60 KB on three channels: 180 KB
        reply = client.request("rtm/publish", {"channel": "ch3", "message": message}, check=False)
        assert reply["body"]["code"] == "rate_limited"
        assert "budget of 200000 bytes" in reply["body"]["error"]
        # Replacing a channel's only message stays within the budget only when the channel keeps one:
        # ch0 keeps up to 1000 messages here, so a second one there is refused too.
        reply = client.request("rtm/publish", {"channel": "ch0", "message": message}, check=False)
        assert reply["body"]["code"] == "rate_limited"
        status, document = _http_publish(broker, key, {"channel": "ch4", "message": message})
        assert status == 429 and document["code"] == "rate_limited"
        assert len(_app_keys(redis_server.url, key)) == 3
        # The history ages out (history_max_age 2 s): the budget frees itself.
        wait_until(
            lambda: (
                client.request("rtm/publish", {"channel": "ch5", "message": message}, check=False)["action"]
                == "rtm/publish/ok"
            ),
            timeout=30,
            message="budget freed once the history expired",
        )


def _accounted_and_held(redis_url: str, app_key: str) -> tuple[int, int]:
    """The app's byte total as the budget script keeps it, and the bytes its streams really hold."""
    r = redis.Redis.from_url(redis_url)
    accounted = int(r.hget(accounting_key_names(app_key)[0], "") or 0)
    held = sum(
        len(fields[b"m"]) for stream in _app_keys(redis_url, app_key) for _, fields in r.xrange(stream)
    )
    return accounted, held


def test_deleting_a_channel_frees_its_bytes_from_the_app_history_budget(broker, budget_app, redis_server):
    key = budget_app(broker, app_history_max_bytes=200_000, history_max_length=2)
    message = "m" * 30_000  # 30,002 bytes of JSON
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        for channel in ("ch0", "ch0", "ch0", "ch1", "ch1", "ch2", "ch3"):  # ch0 trimmed to its last two
            client.publish(channel, message)
        accounted, held = _accounted_and_held(redis_server.url, key)
        assert accounted == held == 6 * 30_002
        reply = client.request("rtm/publish", {"channel": "ch4", "message": message}, check=False)
        assert reply["body"]["code"] == "rate_limited"  # 210 KB would be over 200 KB
        client.delete("ch0")
        assert _accounted_and_held(redis_server.url, key) == (4 * 30_002, 4 * 30_002)
        client.publish("ch4", message)  # accepted again: the deleted channel's bytes left the budget
        client.publish("ch5", message)
        assert _accounted_and_held(redis_server.url, key) == (6 * 30_002, 6 * 30_002)
        client.delete("never-published")  # nothing to free, nothing changes
        assert _accounted_and_held(redis_server.url, key) == (6 * 30_002, 6 * 30_002)
        reply = client.request("rtm/publish", {"channel": "ch6", "message": message}, check=False)
        assert reply["body"]["code"] == "rate_limited"


def test_the_app_byte_total_follows_trimming_by_age_and_channel_expiry(broker, budget_app, redis_server):
    key = budget_app(broker, app_history_max_bytes=500_000, history_max_age=1)
    r = redis.Redis.from_url(redis_server.url)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        for i in range(3):
            client.publish(f"old{i}", "o" * 10_000)
        accounted, held = _accounted_and_held(redis_server.url, key)
        assert accounted == held == 3 * 10_002
        # The channels expire (idle past history_max_age); the next publish takes them out of the total.
        wait_until(lambda: not _app_keys(redis_server.url, key), timeout=30, message="channels expired")
        client.publish("new", "n" * 1_000)
        assert _accounted_and_held(redis_server.url, key) == (1_002, 1_002)
        # Entries older than the max age are trimmed by their channel's next publish, and leave the total
        # (publishing every 0.3 s keeps the channel from expiring as a whole).
        for _ in range(8):
            client.publish("live", "l" * 1_000)
            time.sleep(0.3)
        assert r.xlen(channel_key(key, "live")) < 8
        accounted, held = _accounted_and_held(redis_server.url, key)
        assert accounted == held


def test_many_channels_that_expired_together_free_the_budget_for_the_next_publish(
    broker, budget_app, redis_server
):
    key = budget_app(broker, app_history_max_bytes=100_000, history_max_age=1)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        for i in range(40):
            client.publish(f"old{i}", "o" * 2_398)  # 40 x 2,400 bytes: 96,000
        assert _accounted_and_held(redis_server.url, key) == (96_000, 96_000)
        wait_until(lambda: not _app_keys(redis_server.url, key), timeout=30, message="channels expired")
        # 50,000 bytes fit only once more than 16 of the expired channels (what a publish reaps when it
        # fits) left the total: the first publish is accepted all the same.
        client.publish("new", "n" * 49_998)
        assert _accounted_and_held(redis_server.url, key) == (50_000, 50_000)


def test_distinct_filters_per_connection_are_capped(broker, budget_app):
    key = budget_app(broker)
    projection = ", ".join(f"f{i}" for i in range(300))  # ~2 KB of distinct filter text each
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        codes = []
        for i in range(40):
            reply = client.request(
                "rtm/subscribe",
                {"filter": f"select {projection} from c where n = {i}", "subscription_id": f"s{i}"},
                check=False,
            )
            codes.append(reply["body"].get("code"))
        assert codes[0] is None
        assert "subscription_limit" in codes
        refused = codes.index("subscription_limit")
        assert set(codes[refused:]) == {"subscription_limit"}
        texts = [f"select {projection} from c where n = {i}" for i in range(40)]
        held = sum(map(len, texts[:refused]))  # filter_max_bytes_per_connection: 65,536 by default
        assert held <= 65_536 < held + len(texts[refused])
        # The same filter text again is shared, so it costs nothing more.
        same = client.request(
            "rtm/subscribe", {"filter": f"select {projection} from c where n = 0", "subscription_id": "again"}
        )
        assert same["action"] == "rtm/subscribe/ok"
        client.request("rtm/unsubscribe", {"subscription_id": "s1"})
        again = client.request(
            "rtm/subscribe", {"filter": f"select {projection} from c where n = 99", "subscription_id": "x"}
        )
        assert again["action"] == "rtm/subscribe/ok"
