"""Access lines under ``python -m app run``: none unless asked (``--access-log``), then one per request, and
never a raw byte of client input in the log (a TLS hello sent to the plain port)."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest

from app.client import CobraClient
from tests.conftest import TEST_APP
from tests.support.processes import BrokerProcess, wait_until
from tests.support.raw_http import TLS_HELLO, send_raw


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def requests_of_every_kind(broker: BrokerProcess, tag: str) -> None:
    """A plain path, a static file of the panel, a 404, a WebSocket session and a TLS hello."""
    assert get(f"{broker.http}/health/?{tag}") == 200
    assert get(f"{broker.http}/admin/static/admin.css?{tag}") == 200
    assert get(f"{broker.http}/missing-{tag}") == 404
    with CobraClient(f"{broker.endpoint}?{tag}", TEST_APP) as client:
        client.request("auth/handshake", {"method": "role_secret", "data": {"role": "pubsub"}})
    assert send_raw(broker.port, TLS_HELLO).startswith(b"HTTP/1.1 400")


@pytest.fixture
def started(broker_factory):
    return lambda *args: broker_factory(args=list(args))


def test_no_access_line_is_written_by_default(started):
    broker = started()
    tag = uuid.uuid4().hex
    requests_of_every_kind(broker, tag)
    assert broker.stop() == 0
    output = broker.output()
    assert tag not in output
    assert "app.access" not in output and "geventwebsocket.handler" not in output
    assert "\x16" not in output


def test_the_access_log_writes_one_line_per_request(started):
    broker = started("--access-log")
    tag = uuid.uuid4().hex
    requests_of_every_kind(broker, tag)
    wait_until(lambda: f"GET /v2?{tag}" in broker.output(), message="the WebSocket's line, once it closed")
    assert broker.stop() == 0
    lines = [line for line in broker.output().splitlines() if " app.access: " in line]
    tagged = [line for line in lines if tag in line]
    assert len(tagged) == 4, tagged  # one per request, none for anything else
    assert any(f'"GET /health/?{tag} HTTP/1.1" 200 ' in line for line in tagged)
    assert any(f'"GET /admin/static/admin.css?{tag} HTTP/1.1" 200 ' in line for line in tagged)
    assert any(f'"GET /missing-{tag} HTTP/1.1" 404 ' in line for line in tagged)
    assert any(f'"GET /v2?{tag}&appkey={TEST_APP} HTTP/1.1" 101 ' in line for line in tagged)
    (hello,) = [line for line in lines if '" 400 ' in line]  # the TLS hello: one line, escaped
    assert hello.split(" app.access: ", 1)[1].startswith('127.0.0.1 "\\x16\\x03\\x01\\x02')
    assert hello.isascii()


def test_client_input_never_writes_raw_bytes_into_the_log(started):
    broker = started("--access-log")
    assert send_raw(broker.port, TLS_HELLO).startswith(b"HTTP/1.1 400")
    escape_sequence = b"GET /\x1b[31mred\x07 HTTP/1.1\r\nConnection: close\r\n\r\n"
    assert send_raw(broker.port, escape_sequence).startswith(b"HTTP/1.1")
    wait_until(lambda: broker.output().count(" app.access: ") >= 2, message="both lines written")
    assert broker.stop() == 0
    raw = broker.log_path.read_bytes()
    assert not any(byte < 0x20 and byte not in b"\n" for byte in raw), "a control character reached the log"
    assert "/\\x1b[31mred\\x07" in broker.output()
