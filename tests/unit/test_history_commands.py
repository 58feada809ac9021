"""The hand-built EVALSHA command equals the generic RESP encoding."""

from __future__ import annotations

import hiredis

from app.engine.history import HistoryPolicy, publish_command
from app.resp import encode_command


def test_publish_command_is_valid_resp():
    sha = b"a" * 40
    command = publish_command(sha, b"app::ch\r\nx", b'{"m":"\\r\\n"}', HistoryPolicy(10, 60))
    assert command == encode_command(
        b"EVALSHA", sha, b"1", b"app::ch\r\nx", b'{"m":"\\r\\n"}', b"10", b"60000", b"1"
    )
    reader = hiredis.Reader()
    reader.feed(command)
    assert reader.gets()[0] == b"EVALSHA"


def test_history_off_still_stores_the_newest_value():
    policy = HistoryPolicy(0, 0)
    assert not policy.replay
    assert policy.stored_length == b"1"
