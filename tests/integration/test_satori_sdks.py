"""The public Satori RTM SDKs, unchanged, against our broker in JSON and in CBOR mode (issue 15, PROTOCOL
§10): the JavaScript ``satori-rtm-sdk`` 1.2.2 under Node, the Python ``satori-rtm-sdk`` 1.5.0 in its venv.

Each test runs once per SDK and encoding: connect, role-secret authentication as the SDKs do it, subscribe
plain and with a StreamSQL filter, publish with acks, rtm/read and rtm/write, subscribe with ``history``. The
SDK runs in its own process behind a small driver script (tests/sdk/); our own JSON client (app.client)
publishes and watches from the other side, so every CBOR test also shows that CBOR and JSON clients share
channels. scripts/install-sdks.sh installs the SDKs (scripts/test.sh calls it); without network the tests are
skipped, except under CI=true, where they fail. The slow subscriber is in test_sdk_fast_forward.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import CobraClient
from app.models import App
from tests.conftest import TEST_APP
from tests.support.processes import BrokerProcess
from tests.support.satori_sdk import INSTALL, MODE_IDS, MODES, SdkDriver, install_sdk

pytestmark = pytest.mark.slow

# Values both encodings must carry unchanged: unicode beyond the BMP, floats, negative and 2^40 integers,
# nesting, null/true/false, and messages that are not objects
MESSAGES: list[Any] = [
    {"n": 0, "text": "ünïcödé ✓ 😀", "fps": 24.5, "ratio": 0.1, "neg": -7, "big": 2**40},
    {"n": 1, "nested": {"list": [1, "two", None, True, False], "empty": {}}},
    "just a string",
    42,
    [1, "x", {"y": None}],
]


@pytest.fixture(params=MODES, ids=MODE_IDS)
def mode(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def sdk_client(
    mode: tuple[str, str], broker: BrokerProcess, test_apps: dict[str, App], tmp_path: Path
) -> Iterator[Callable[..., SdkDriver]]:
    """``sdk_client(role="pubsub", secret=None)`` → a started SDK driver for TEST_APP, closed afterwards."""
    sdk, protocol = mode
    install_sdk(sdk)
    drivers: list[SdkDriver] = []

    def start(role: str = "pubsub", secret: str | None = None) -> SdkDriver:
        driver = SdkDriver(
            sdk,
            protocol,
            # the SDKs append /v2 themselves
            f"ws://127.0.0.1:{broker.port}",
            TEST_APP,
            role,
            secret or test_apps[TEST_APP].roles[role].secret,
            tmp_path,
        )
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.close()


def position_key(position: str) -> tuple[int, int]:
    ms, seq = position.split("-")
    return int(ms), int(seq)


def json_messages(client: CobraClient, subscription_id: str, count: int) -> list[Any]:
    """The next ``count`` messages our JSON client receives on ``subscription_id``."""
    received: list[Any] = []
    while len(received) < count:
        push = client.next_push(timeout=30)
        if push["action"] == "rtm/subscription/data" and push["body"]["subscription_id"] == subscription_id:
            received.extend(push["body"]["messages"])
    return received


def test_connects_and_authenticates_with_its_role_secret(sdk_client, mode):
    sdk, protocol = mode
    connected = sdk_client().connected()
    # The JavaScript SDK offers "json" or "cbor"; the Python SDK offers "cbor" or nothing (plain JSON)
    expected = {("js", "json"): "json", ("python", "json"): ""}.get(mode, "cbor")
    assert connected["protocol"] == expected, (sdk, protocol)


def test_a_wrong_role_secret_is_refused(sdk_client):
    driver = sdk_client(secret="not-the-secret-of-pubsub-0123456789")
    failed = driver.wait_event("auth_failed")
    assert failed["reason"] == "challenge_failed"
    assert not driver.named("connected")


def test_publish_with_acks_reaches_the_sdk_and_json_subscribers(sdk_client, connect, channel):
    driver = sdk_client()
    driver.connected()
    assert driver.subscribe(channel)["event"] == "subscribed"
    watcher = connect()
    watcher.subscribe(channel)

    replies = [driver.request("publish", channel=channel, message=message) for message in MESSAGES]
    assert [r["action"] for r in replies] == ["rtm/publish/ok"] * len(MESSAGES), replies
    assert all(r["body"]["channels"] == [channel] for r in replies)
    positions = [position_key(r["body"]["position"]) for r in replies]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    assert driver.wait_messages(channel, len(MESSAGES)) == MESSAGES
    assert json_messages(watcher, channel, len(MESSAGES)) == MESSAGES


def test_subscribe_with_a_filter_gets_only_matching_messages_projected(sdk_client, connect, channel):
    driver = sdk_client()
    driver.connected()
    sql = f"select device.model as model, data.fps as fps from `{channel}` where data.fps < 30"
    assert driver.subscribe("slow-frames", filter=sql)["event"] == "subscribed"
    assert driver.subscribe(channel)["event"] == "subscribed"

    published = [
        {"device": {"model": "pixel"}, "data": {"fps": 60}},
        {"device": {"model": "pixel"}, "data": {"fps": 24.5}},
        "not an object",
        {"device": {"model": "iphone"}, "data": {"fps": 59}},
        {"device": {"model": "iphone"}, "data": {"fps": 12}},
    ]
    publisher = connect()
    for message in published:
        publisher.publish(channel, message)

    assert driver.wait_messages(channel, len(published)) == published
    # a last matching message: once it is in, everything published before it has been filtered
    publisher.publish(channel, {"device": {"model": "last"}, "data": {"fps": 1}})
    assert driver.wait_messages("slow-frames", 3) == [
        {"model": "pixel", "fps": 24.5},
        {"model": "iphone", "fps": 12},
        {"model": "last", "fps": 1},
    ]


def test_a_bad_filter_fails_that_subscription_and_the_connection_carries_on(sdk_client, channel):
    driver = sdk_client()
    driver.connected()
    failed = driver.subscribe("broken", filter="select from where nothing")
    assert failed["event"] == "subscribe_failed"
    assert failed["reason"]  # the Python SDK hands over the reply's "reason" (the parser's words)
    if failed["body"] is not None:  # the JavaScript SDK hands over the whole reply
        assert failed["body"]["code"] == "invalid_filter"
        assert failed["body"]["error"].startswith("Invalid SQL expression")
    reply = driver.request("publish", channel=channel, message={"still": "here"})
    assert reply["action"] == "rtm/publish/ok"
    assert not driver.named("disconnected")


def test_write_then_read_then_delete(sdk_client, connect, channel):
    driver = sdk_client()
    driver.connected()
    value = {"score": 42, "who": "ada ✓", "ratio": 0.25}
    written = driver.request("write", channel=channel, message=value)
    assert written["action"] == "rtm/write/ok", written

    read = driver.request("read", channel=channel)
    assert read["action"] == "rtm/read/ok", read
    assert read["body"]["message"] == value
    other = connect()
    assert other.read(channel)["message"] == value

    # the newest value is also the last published message (PROTOCOL §5), whoever published it
    other.publish(channel, ["published", 2])
    assert driver.request("read", channel=channel)["body"]["message"] == ["published", 2]

    deleted = driver.request("delete", channel=channel)
    assert deleted["action"] == "rtm/delete/ok", deleted
    assert driver.request("read", channel=channel)["body"]["message"] is None


def test_subscribe_with_history_count_replays_the_last_n_then_live(sdk_client, connect, channel):
    publisher = connect()
    for n in range(5):
        publisher.publish(channel, {"n": n})
    driver = sdk_client()
    driver.connected()
    assert driver.subscribe(channel, history={"count": 3})["event"] == "subscribed"
    publisher.publish(channel, {"n": 5})
    assert driver.wait_messages(channel, 4) == [{"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}]
    publisher.publish(channel, {"n": 6})
    assert driver.wait_messages(channel, 5) == [{"n": n} for n in range(2, 7)]


def test_the_installer_is_a_quick_no_op_once_installed():
    install_sdk("js")
    install_sdk("python")
    result = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stderr


def test_the_installer_fails_with_its_reason_when_it_cannot_install():
    install_sdk("python")
    env = {**os.environ, "PYTHON": "/nonexistent/python3.11"}  # another interpreter: a reinstall is due
    result = subprocess.run([str(INSTALL), "python"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "no '/nonexistent/python3.11' on PATH" in result.stderr
    # and the installed SDK is left as it was
    assert subprocess.run([str(INSTALL), "python"], capture_output=True, timeout=120).returncode == 0


# satori-rtm-sdk 1.2.2 (src/rtm.js RTM.prototype._recv) looks every incoming PDU's id up among its pending
# request callbacks, pushes included; our pushes carry per-subscription ids counting from 0 (PROTOCOL §2, §5,
# a MUST for the cobras client), so a push whose id equals a pending request's id reaches that request's
# callback too (a data push in addition to the reply; an info push instead of it, the SDK then drops the
# callback). The Python SDK routes pushes by action first and is not affected. A protocol question, not a fix
# for this branch.
PUSH_ID_CLASH = "the JS SDK hands a push whose id equals a pending request's id to that request's callback"


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(
            m,
            id=i,
            marks=pytest.mark.xfail(
                m[0] == "js",
                strict=True,
                reason=PUSH_ID_CLASH,
            ),
        )
        for m, i in zip(MODES, MODE_IDS, strict=True)
    ],
)
def test_request_callbacks_get_only_their_reply_while_pushes_stream(sdk_client, connect, channel):
    publisher = connect()
    for n in range(60):
        publisher.publish(channel, {"n": n})
    driver = sdk_client()
    driver.connected()
    # a history replay of 60 pushes (ids 0..59) while 40 reads (request ids from 4 on) are in flight
    subscribe = ("subscribe", {"id": channel, "mode": "SIMPLE", "body": {"history": {"count": 60}}})
    refs = driver.commands(subscribe, *[("read", {"channel": channel})] * 40)[1:]
    driver.wait_messages(channel, 60)
    driver.wait_until(
        lambda: len([e for e in driver.named("reply") if e["action"] == "rtm/read/ok"]) >= len(refs),
        timeout=30,
        what="every read reply",
    )
    replies = driver.named("reply")
    assert [e["action"] for e in replies] == ["rtm/read/ok"] * len(refs), [
        (e["ref"], e["action"]) for e in replies if e["action"] != "rtm/read/ok"
    ][:5]
