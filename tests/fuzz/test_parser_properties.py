"""Property-based fuzzing of the sans-I/O parsers: whatever bytes arrive, the outcome is a value or the
documented exception, never anything else (hypothesis)."""

from __future__ import annotations

import os
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import protocol
from app.protocol import FatalError, Request
from app.stream_sql import FilterError, compile_filter
from app.websocket.frames import MessageReader, ProtocolError, apply_mask, parse_close_payload
from app.websocket.handshake import DeflateParams, HandshakeError, check_upgrade, negotiate_deflate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_parse_to_a_request_or_a_fatal_error(data):
    assert isinstance(protocol.parse_request(data), (Request, FatalError))


@FUZZ
@given(st.dictionaries(st.sampled_from(["action", "id", "body", "x"]), json_values, max_size=4))
def test_any_json_object_parses_to_a_request_or_a_fatal_error(pdu):
    import orjson

    result = protocol.parse_request(orjson.dumps(pdu))
    if isinstance(result, Request):
        assert result.action in protocol.ACTIONS
        assert result.id is not None
        assert isinstance(result.body, dict)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_compiles_or_raises_filter_error(text):
    try:
        compile_filter(text)
    except FilterError as exc:
        assert isinstance(exc.position, int)


def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for index, value in flips:
        if buffer:
            buffer[index % len(buffer)] = value
    return bytes(buffer)


def frame(opcode: int, payload: bytes, fin: bool, rsv: int, masked: bool) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    bit = 0x80 if masked else 0
    header = struct.pack("!BB", first, bit | n) if n < 126 else struct.pack("!BBH", first, bit | 126, n)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + apply_mask(payload, key)


frames = st.builds(
    frame,
    opcode=st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11]),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    masked=st.booleans(),
)


@FUZZ
@given(
    st.lists(frames, max_size=8),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    st.integers(1, 64),
    st.booleans(),
)
def test_any_frame_sequence_yields_events_or_a_protocol_error(sequence, flips, chunk, deflate):
    reader = MessageReader(1024, DeflateParams() if deflate else None)
    data = mutate(b"".join(sequence), flips)
    try:
        for i in range(0, len(data), chunk):
            for opcode, payload in reader.feed(data[i : i + chunk]):
                assert opcode in (1, 2, 8, 9, 10)
                assert len(payload) <= 1024 or opcode in (8, 9, 10)
    except ProtocolError as exc:
        assert exc.code in (1002, 1007, 1009)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_deflate_payloads_inflate_or_fail_cleanly(garbage):
    reader = MessageReader(4096, DeflateParams())
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    valid = (compressor.compress(garbage) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    for payload in (garbage, valid):
        try:
            reader.feed(frame(2, payload, True, 4, True))
        except ProtocolError as exc:
            assert exc.code in (1002, 1007, 1009)


@FUZZ
@given(st.binary(max_size=130))
def test_any_close_payload_parses_or_is_a_protocol_error(payload):
    try:
        code, reason = parse_close_payload(payload)
        assert isinstance(code, int) and isinstance(reason, str)
    except ProtocolError as exc:
        assert exc.code in (1002, 1007)


header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@FUZZ
@given(header_text)
def test_any_extension_header_negotiates_or_declines(header):
    params = negotiate_deflate(header)
    assert params is None or params.response.startswith("permessage-deflate")


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "REQUEST_METHOD",
                "SERVER_PROTOCOL",
                "HTTP_CONNECTION",
                "HTTP_SEC_WEBSOCKET_VERSION",
                "HTTP_SEC_WEBSOCKET_KEY",
                "HTTP_SEC_WEBSOCKET_PROTOCOL",
                "HTTP_SEC_WEBSOCKET_EXTENSIONS",
            ]
        ),
        header_text,
    )
)
def test_any_upgrade_request_is_accepted_or_refused_with_400(environ):
    try:
        check_upgrade(environ, deflate_enabled=True)
    except HandshakeError as exc:
        assert exc.status.startswith("400")


# --------------------------------------------------------------------------- LIKE
like_subjects = st.text(alphabet="ab\u00e9\U0001f600", max_size=40)


@FUZZ
@given(
    pattern=st.text(alphabet="ab\u00e9\U0001f600%_", max_size=14),
    subject=like_subjects,
    bitwise_from=st.sampled_from([0, 8, 4096]),
)
def test_like_matcher_agrees_with_the_regex_definition_on_both_search_paths(pattern, subject, bitwise_from):
    """The linear matcher (regex near the start, bit-parallel masks beyond: ``bitwise_from`` forces the
    latter early) answers exactly what the backtracking regex definition of the pattern answers."""
    import re

    from app.stream_sql.codegen import _ANY, _ONE, _like_parts, like_matcher

    parts = _like_parts(pattern)
    if _ANY not in parts and _ONE not in parts:
        return  # no wildcard: the substring rule applies instead
    regex = "".join(".*" if p is _ANY else "." if p is _ONE else re.escape(p) for p in parts)
    expected = re.fullmatch(regex, subject, re.DOTALL) is not None
    assert like_matcher(parts, bitwise_from)(subject) == expected
