"""PROTOCOL §13: the signature of an HTTP publish and the shape of its body, without a socket."""

import base64
import hashlib
import hmac

import pytest

from app.http_signing import MAX_BATCH, BadRequest, parse_publish_body, sign, signature_valid
from app.models import Role

NOW = 1_800_000_000.0
ROLE = Role("_pub", "s" * 16, previous_secret="p" * 16, previous_secret_expires_at=NOW + 60)


def test_signature_is_base64_hmac_sha256_of_timestamp_newline_body():
    expected = hmac.new(b"secret", b"123\n{}", hashlib.sha256).digest()
    assert sign("secret", "123", b"{}") == base64.b64encode(expected).decode()


def test_a_signature_by_the_current_secret_is_valid():
    ts = str(int(NOW))
    assert signature_valid(ROLE, ts, sign("s" * 16, ts, b"{}"), b"{}", NOW)


def test_the_previous_secret_signs_while_the_rotation_grace_lasts_only():
    ts = str(int(NOW))
    signature = sign("p" * 16, ts, b"{}")
    assert signature_valid(ROLE, ts, signature, b"{}", NOW)
    later = NOW + 120
    assert not signature_valid(ROLE, str(int(later)), sign("p" * 16, str(int(later)), b"{}"), b"{}", later)


def test_a_signature_of_another_body_is_invalid():
    ts = str(int(NOW))
    assert not signature_valid(ROLE, ts, sign("s" * 16, ts, b"{}"), b'{"a":1}', NOW)


@pytest.mark.parametrize("skew", [301, -301])
def test_a_timestamp_beyond_300_seconds_of_the_server_clock_is_refused(skew):
    ts = str(int(NOW) + skew)
    assert not signature_valid(ROLE, ts, sign("s" * 16, ts, b"{}"), b"{}", NOW)


@pytest.mark.parametrize("ts", ["", "12.5", "-5", "\uff11\uff12\uff13", "9" * 40])
def test_a_timestamp_that_is_not_decimal_seconds_is_refused(ts):
    assert not signature_valid(ROLE, ts, "x", b"{}", NOW)


def test_body_with_channel_and_message():
    items, batched = parse_publish_body(b'{"channel": "c", "message": {"a": 1}}')
    assert not batched and items[0].channels == ("c",) and items[0].message == {"a": 1}


def test_channels_win_over_channel_and_are_deduplicated_in_order():
    items, _ = parse_publish_body(b'{"channel": "x", "channels": ["b", "a", "b"], "message": 1}')
    assert items[0].channels == ("b", "a")


def test_messages_form_is_batched():
    items, batched = parse_publish_body(
        b'{"messages": [{"channel": "a", "message": 1}, {"channel": "b", "message": 2}]}'
    )
    assert batched and [i.channels for i in items] == [("a",), ("b",)]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "bad_schema"),
        (b"[1]", "bad_schema"),
        (b'{"channel": "c"}', "empty_message"),
        (b'{"message": 1}', "missing_channel"),
        (b'{"channel": 5, "message": 1}', "bad_schema"),
        (b'{"channels": ["a", ""], "message": 1}', "bad_schema"),
        (b'{"messages": []}', "bad_schema"),
        (b'{"messages": [5]}', "bad_schema"),
    ],
)
def test_malformed_bodies_are_refused_with_their_code(body, code):
    with pytest.raises(BadRequest) as caught:
        parse_publish_body(body)
    assert caught.value.code == code


def test_more_than_a_thousand_publishes_in_one_request_are_refused():
    body = b'{"messages": [' + b",".join([b'{"channel": "a", "message": 1}'] * (MAX_BATCH + 1)) + b"]}"
    with pytest.raises(BadRequest):
        parse_publish_body(body)
