"""RFC 6455 §4.2.1 and RFC 7692 §7 without a socket."""

from __future__ import annotations

import base64

import pytest

from app.websocket.handshake import (
    HandshakeError,
    accept_key,
    check_upgrade,
    negotiate_deflate,
    parse_extensions,
)

KEY = base64.b64encode(b"0123456789abcdef").decode()


def environ(**overrides):
    env = {
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "keep-alive, Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": KEY,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_accept_key_matches_rfc_6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_upgrade_is_accepted():
    upgrade = check_upgrade(environ(), deflate_enabled=True)
    assert upgrade.accept == accept_key(KEY)
    headers = dict(upgrade.response_headers())
    assert headers["Upgrade"] == "websocket" and headers["Connection"] == "Upgrade"


@pytest.mark.parametrize(
    "overrides",
    [
        {"REQUEST_METHOD": "POST"},
        {"SERVER_PROTOCOL": "HTTP/1.0"},
        {"HTTP_CONNECTION": "close"},
        {"HTTP_SEC_WEBSOCKET_VERSION": "8"},
        {"HTTP_SEC_WEBSOCKET_VERSION": None},
        {"HTTP_SEC_WEBSOCKET_KEY": None},
        {"HTTP_SEC_WEBSOCKET_KEY": "short"},
        {"HTTP_SEC_WEBSOCKET_KEY": "@@@@@@@@@@@@@@@@@@@@@@=="},
        {"HTTP_SEC_WEBSOCKET_KEY": base64.b64encode(b"x" * 17).decode()},
    ],
)
def test_malformed_upgrades_are_400(overrides):
    with pytest.raises(HandshakeError) as error:
        check_upgrade(environ(**overrides), deflate_enabled=True)
    assert error.value.status.startswith("400")


def test_json_subprotocol_is_selected():
    assert (
        check_upgrade(environ(HTTP_SEC_WEBSOCKET_PROTOCOL="a, JSON"), deflate_enabled=True).subprotocol
        == "json"
    )


def test_no_subprotocol_when_json_not_offered():
    assert (
        check_upgrade(environ(HTTP_SEC_WEBSOCKET_PROTOCOL="chat"), deflate_enabled=True).subprotocol is None
    )


def test_extension_header_parsing_handles_quotes_and_several_offers():
    assert parse_extensions('permessage-deflate; client_max_window_bits="10", foo') == [
        ("permessage-deflate", [("client_max_window_bits", "10")]),
        ("foo", []),
    ]


def test_deflate_offer_without_parameters():
    params = negotiate_deflate("permessage-deflate")
    assert params is not None
    assert params.response == "permessage-deflate; server_no_context_takeover"
    assert not params.client_no_context_takeover


def test_quoted_window_bits_are_accepted():
    params = negotiate_deflate('permessage-deflate; server_max_window_bits="12"')
    assert params is not None and params.server_max_window_bits == 12


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=07",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; mystery",
    ],
)
def test_invalid_offers_are_declined(offer):
    assert negotiate_deflate(offer) is None


def test_deflate_is_not_negotiated_when_disabled():
    env = environ(HTTP_SEC_WEBSOCKET_EXTENSIONS="permessage-deflate")
    assert check_upgrade(env, deflate_enabled=False).deflate is None


@pytest.mark.parametrize(
    ("offer", "selected"),
    [("cbor", "cbor"), ("chat, CBOR", "cbor"), ("cbor, json", "json"), ("json, cbor", "json")],
)
def test_cbor_is_selected_when_offered_and_json_is_not(offer, selected):
    # PROTOCOL §1, §10: json wins (the C++ SDK requires it); cbor for the Satori SDKs' CBOR mode.
    upgrade = check_upgrade(environ(HTTP_SEC_WEBSOCKET_PROTOCOL=offer), deflate_enabled=True)
    assert upgrade.subprotocol == selected
    assert ("Sec-WebSocket-Protocol", selected) in upgrade.response_headers()
