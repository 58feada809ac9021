"""Access lines and log escaping (pure), and how a refusal after gevent-websocket's 101 is told."""

from __future__ import annotations

import logging

from app.logs import TextFormatter, access_log_levels, printable
from app.settings import Settings
from app.websocket.stock import refusal_close_code, refusal_reason
from app.websocket.transport import access_line


def test_control_characters_are_escaped():
    assert printable("a\x16\x03b\nc\x7f\x85") == "a\\x16\\x03b\\x0ac\\x7f\\x85"


def test_printable_text_is_kept_as_it_is():
    assert printable("GET /café?x=1 HTTP/1.1") == "GET /café?x=1 HTTP/1.1"


def test_a_text_log_line_cannot_be_forged_with_a_newline():
    record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "client said %s", ("hi\nINFO fake",), None)
    line = TextFormatter().format(record)
    assert "\n" not in line and line.endswith("client said hi\\x0aINFO fake")


def test_a_traceback_keeps_its_line_breaks():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "\nTraceback" in TextFormatter().format(record)


def test_access_line_of_a_request():
    line = access_line("127.0.0.1", "GET /health/ HTTP/1.1", "200", 122, 0.000108)
    assert line == '127.0.0.1 "GET /health/ HTTP/1.1" 200 122 0.000108'


def test_access_line_of_a_tls_hello_is_ascii_with_escapes():
    line = access_line("10.0.0.1", "\x16\x03\x01\x02\x00\xfc", "400", 0, 0.0, "Invalid HTTP method: '\xfc'")
    assert line == "10.0.0.1 \"\\x16\\x03\\x01\\x02\\x00\\xfc\" 400 - 0.000000 (Invalid HTTP method: '\\xfc')"


def test_access_lines_are_off_unless_asked():
    assert set(access_log_levels(Settings()).values()) == {"WARNING"}
    assert set(access_log_levels(Settings(access_log=True)).values()) == {"INFO"}


def test_a_refusal_after_the_101_is_a_close_frame_saying_why():
    assert refusal_close_code("403 Forbidden") == 1008
    assert refusal_close_code("429 Too Many Requests") == 1008
    assert refusal_close_code("400 Bad Request") == 1002
    assert refusal_close_code("503 Service Unavailable") == 1011
    assert refusal_reason("403 Forbidden", b"KO\n") == "403 Forbidden: KO"
    assert len(refusal_reason("429 Too Many Requests", "é".encode() * 200).encode()) <= 123
