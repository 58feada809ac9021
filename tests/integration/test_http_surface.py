"""PROTOCOL §1: the plain HTTP paths and the WebSocket upgrade."""

from __future__ import annotations

import urllib.error
import urllib.request

from app import __version__
from bench.wsclient import RawWebSocket, http_request, upgrade_request
from tests.conftest import TEST_APP


def get(broker, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(broker.http + path, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_answers_ok(broker):
    assert get(broker, "/health/") == (200, b"OK\n")


def test_version_answers_the_version(broker):
    assert get(broker, "/version/") == (200, f"{__version__}\n".encode())


def test_root_shows_a_banner_with_version_and_node(broker):
    status, body = get(broker, "/")
    assert status == 200
    assert __version__.encode() in body and b"node:" in body and b"started:" in body


def test_unknown_path_is_404(broker):
    assert get(broker, "/nope")[0] == 404


def test_upgrade_with_known_appkey_is_101_with_cobra_headers(broker):
    ws = RawWebSocket(broker.port, TEST_APP)
    assert ws.status == 101
    assert ws.headers["x-cobra-node"]
    assert ws.headers["x-cobra-version"] == __version__
    ws.close()


def test_upgrade_on_any_path_is_accepted(broker):
    status, _, _ = http_request(broker.port, upgrade_request(f"/some/other/path?appkey={TEST_APP}"))
    assert status == 101


def test_upgrade_without_appkey_is_403(broker):
    status, _, body = http_request(broker.port, upgrade_request("/v2"))
    assert (status, body) == (403, b"KO\n")


def test_upgrade_with_unknown_appkey_is_403(broker):
    status, _, body = http_request(broker.port, upgrade_request("/v2?appkey=doesnotexist"))
    assert (status, body) == (403, b"KO\n")


def test_upgrade_with_duplicate_appkey_is_403(broker):
    status, _, _ = http_request(broker.port, upgrade_request(f"/v2?appkey={TEST_APP}&appkey={TEST_APP}"))
    assert status == 403


def test_upgrade_with_empty_appkey_is_403(broker):
    status, _, _ = http_request(broker.port, upgrade_request("/v2?appkey="))
    assert status == 403


def test_json_subprotocol_is_selected_when_offered(broker):
    ws = RawWebSocket(broker.port, TEST_APP, {"Sec-WebSocket-Protocol": "chat, json"})
    assert ws.headers["sec-websocket-protocol"] == "json"
    ws.close()


def test_offer_without_json_subprotocol_is_accepted_without_one(broker):
    ws = RawWebSocket(broker.port, TEST_APP, {"Sec-WebSocket-Protocol": "chat"})
    assert ws.status == 101
    assert "sec-websocket-protocol" not in ws.headers
    ws.close()


def test_malformed_key_is_400(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Sec-WebSocket-Key": "not base64!"})
    assert http_request(broker.port, request)[0] == 400


def test_short_key_is_400(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Sec-WebSocket-Key": "c2hvcnQ="})
    assert http_request(broker.port, request)[0] == 400


def test_missing_key_is_400(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Sec-WebSocket-Key": None})
    assert http_request(broker.port, request)[0] == 400


def test_wrong_version_is_400_and_names_the_supported_one(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Sec-WebSocket-Version": "8"})
    status, headers, _ = http_request(broker.port, request)
    assert status == 400
    assert headers["sec-websocket-version"] == "13"


def test_http_1_0_upgrade_is_400(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", version="HTTP/1.0")
    assert http_request(broker.port, request)[0] == 400


def test_upgrade_without_connection_upgrade_is_400(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Connection": "keep-alive"})
    assert http_request(broker.port, request)[0] == 400


def test_post_upgrade_is_400(broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}").replace(b"GET ", b"POST ", 1)
    assert http_request(broker.port, request)[0] == 400
