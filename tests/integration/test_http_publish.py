"""PROTOCOL §13: POST /v2/publish against a real broker process, with real WebSocket subscribers."""

from __future__ import annotations

import http.client
import subprocess
import time
import uuid

import orjson
import pytest
import redis

from app.channels import channel_key
from app.client import CobraClient, HttpPublisher, HttpPublishError
from app.http_signing import sign
from app.models import App, AppSettings, Role
from tests.conftest import TEST_APP
from tests.integration.test_cli import cli
from tests.support.processes import wait_until

SECRET = "secret-of-pubsub-0123456789abcdef"  # tests/conftest.py: the pubsub role of TEST_APP


def post(broker, body: bytes, *, role="pubsub", secret=SECRET, appkey=TEST_APP, timestamp=None, headers=None):
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    all_headers = {
        "Content-Type": "application/json",
        "X-Cobra-Role": role,
        "X-Cobra-Timestamp": timestamp,
        "X-Cobra-Signature": sign(secret, timestamp, body),
        **(headers or {}),
    }
    connection = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=10)
    try:
        connection.request("POST", f"/v2/publish?appkey={appkey}", body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def test_a_signed_publish_is_acknowledged_with_its_position_once_redis_holds_it(
    broker, redis_server, channel
):
    status, reply = post(broker, orjson.dumps({"channel": channel, "message": {"n": 1}}))
    assert status == 200 and reply["channels"] == [channel]
    stored = redis.Redis.from_url(redis_server.url).xrange(channel_key(TEST_APP, channel))
    assert [entry_id.decode() for entry_id, _ in stored] == [reply["position"]]


def test_an_http_publish_reaches_websocket_subscribers(broker, connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    status, _ = post(broker, orjson.dumps({"channel": channel, "message": {"from": "http"}}))
    assert status == 200
    assert subscriber.next_push(timeout=5)["body"]["messages"] == [{"from": "http"}]


@pytest.mark.parametrize(
    "tamper",
    [
        {"secret": "a-wrong-secret-0123456789"},
        {"timestamp": str(int(time.time()) - 1000)},
        {"role": "no-such-role"},
        {"appkey": "no-such-app"},
    ],
    ids=["wrong secret", "stale timestamp", "unknown role", "unknown app"],
)
def test_bad_credentials_are_refused_alike_with_401(broker, channel, tamper):
    status, reply = post(broker, orjson.dumps({"channel": channel, "message": 1}), **tamper)
    assert (status, reply["code"]) == (401, "signature_invalid")


def test_a_role_without_publish_is_refused_with_403(broker, channel):
    body = orjson.dumps({"channel": channel, "message": 1})
    status, reply = post(broker, body, role="subscriber", secret="secret-of-subscriber-0123456789abcdef")
    assert (status, reply["code"]) == (403, "permission_denied")


def test_channel_patterns_of_the_role_apply(broker):
    secret = "secret-of-limited-0123456789abcdef"
    status, _ = post(
        broker, orjson.dumps({"channel": "allowed-1", "message": 1}), role="limited", secret=secret
    )
    assert status == 200
    status, reply = post(
        broker, orjson.dumps({"channel": "other", "message": 1}), role="limited", secret=secret
    )
    assert (status, reply["code"]) == (403, "permission_denied")


def test_a_batch_gets_one_result_per_publish_in_order(broker, connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    secret = "secret-of-limited-0123456789abcdef"
    body = orjson.dumps(
        {
            "messages": [
                {"channel": "allowed-a", "message": 1},
                {"channel": "forbidden", "message": 2},
                {"channels": ["allowed-b", "exact"], "message": 3},
            ]
        }
    )
    status, reply = post(broker, body, role="limited", secret=secret)
    assert status == 200
    first, second, third = reply["results"]
    assert first["channels"] == ["allowed-a"] and first["position"]
    assert second["code"] == "permission_denied"
    assert third["channels"] == ["allowed-b", "exact"]


def test_a_hundred_message_batch_is_delivered_in_order(broker, connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    body = orjson.dumps({"messages": [{"channel": channel, "message": i} for i in range(100)]})
    status, reply = post(broker, body)
    assert status == 200 and all("position" in r for r in reply["results"])
    received = [m for _ in range(100) for m in subscriber.next_push(timeout=5)["body"]["messages"]]
    assert received == list(range(100))


def test_malformed_bodies_get_400(broker):
    status, reply = post(broker, b"{not json")
    assert (status, reply["code"]) == (400, "bad_schema")
    status, reply = post(broker, b'{"message": 1}')
    assert (status, reply["code"]) == (400, "missing_channel")


def test_a_body_over_the_message_size_limit_gets_413(broker, channel):
    big = orjson.dumps({"channel": channel, "message": "x" * (1024 * 1024 + 10)})
    status, reply = post(broker, big)
    assert (status, reply["code"]) == (413, "message_too_large")


def test_get_is_not_a_publish(broker):
    connection = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=5)
    connection.request("GET", f"/v2/publish?appkey={TEST_APP}")
    assert connection.getresponse().status == 405


@pytest.fixture
def rate_limited_app(store, broker):
    key = f"http-{uuid.uuid4().hex[:8]}"
    secret = "http-rate-secret-0123456789abcdef"
    store.put_app(
        App(key=key, roles={"r": Role(name="r", secret=secret)}, settings=AppSettings(publish_rate=2))
    )

    def visible():
        with CobraClient(broker.endpoint, key, "r", secret, timeout=2):
            return True

    wait_until(lambda: _quietly(visible), message="app visible to the broker")
    yield key, secret
    store.delete_app(key)


def _quietly(check):
    try:
        return check()
    except Exception:
        return False


def test_the_apps_publish_rate_applies_with_429(broker, rate_limited_app):
    key, secret = rate_limited_app
    statuses = [
        post(broker, orjson.dumps({"channel": "c", "message": i}), role="r", secret=secret, appkey=key)[0]
        for i in range(8)
    ]
    assert statuses[:4] == [200] * 4  # a burst of 2 s at 2/s
    assert 429 in statuses[4:]


def test_http_publisher_client_publishes_and_batches(broker, connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    with HttpPublisher(broker.http, TEST_APP, "pubsub", SECRET) as publisher:
        assert publisher.publish(channel, {"a": 1})["channels"] == [channel]
        results = publisher.publish_many([(channel, 2), (channel, 3)])
        assert [sorted(r) for r in results] == [["channels", "position"]] * 2
    received = [m for _ in range(3) for m in subscriber.next_push(timeout=5)["body"]["messages"]]
    assert received == [{"a": 1}, 2, 3]


def test_http_publisher_raises_the_brokers_refusal(broker, channel):
    publisher = HttpPublisher(broker.http, TEST_APP, "pubsub", "wrong-secret-0123456789")
    with publisher, pytest.raises(HttpPublishError) as caught:
        publisher.publish(channel, 1)
    assert (caught.value.status, caught.value.code) == (401, "signature_invalid")


def test_http_publisher_retries_while_the_broker_is_away_then_fails_clearly():
    publisher = HttpPublisher("http://127.0.0.1:9", TEST_APP, "pubsub", SECRET, retries=2, backoff=0.01)
    with pytest.raises(HttpPublishError) as caught:
        publisher.publish("c", 1)
    assert caught.value.code == "unreachable"


def test_curl_with_an_openssl_signature_publishes(broker, channel):
    """The README's shell example: the signature computed by openssl, the request sent by curl."""
    script = f"""
        body='{{"channel": "{channel}", "message": {{"from": "curl"}}}}'
        ts=$(date +%s)
        sig=$(printf '%s\\n%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64)
        curl -sS -X POST "http://127.0.0.1:{broker.port}/v2/publish?appkey={TEST_APP}" \\
          -H "X-Cobra-Role: pubsub" -H "X-Cobra-Timestamp: $ts" -H "X-Cobra-Signature: $sig" \\
          --data-binary "$body"
    """
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={"SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )
    assert orjson.loads(result.stdout)["channels"] == [channel], result.stderr


def test_cli_publish_over_http_sends_every_line_in_batches(broker, connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    lines = "".join(f"{i}\n" for i in range(150))  # two requests: 100 + 50
    args = [
        "--endpoint",
        broker.endpoint,
        "--appkey",
        TEST_APP,
        "--rolename",
        "pubsub",
        "--rolesecret",
        SECRET,
    ]
    result = cli("publish", "--http", "--channel", channel, *args, stdin=lines)
    assert result.returncode == 0, result.stderr
    assert "published 150 message(s)" in result.stderr
    received = [m for _ in range(150) for m in subscriber.next_push(timeout=5)["body"]["messages"]]
    assert received == list(range(150))


def test_cli_publish_over_http_with_a_wrong_secret_says_so_in_one_line(broker, channel):
    args = [
        "--endpoint",
        broker.endpoint,
        "--appkey",
        TEST_APP,
        "--rolename",
        "pubsub",
        "--rolesecret",
        "x" * 20,
    ]
    result = cli("publish", "--http", "--channel", channel, "--data", "1", *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: HTTP publish refused: HTTP 401")
    assert "Traceback" not in result.stderr


def test_a_body_nested_300_levels_deep_gets_400_not_a_crash(broker, channel):
    deep = b"[" * 300 + b"1" + b"]" * 300  # orjson parses it (depth 1024) but cannot store it again
    status, reply = post(broker, b'{"channel": "' + channel.encode() + b'", "message": ' + deep + b"}")
    assert (status, reply["code"]) == (400, "invalid_message")
    assert post(broker, orjson.dumps({"channel": channel, "message": 1}))[0] == 200
