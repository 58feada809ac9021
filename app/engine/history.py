"""Channel history in Redis streams, and the one-round-trip publish (PROTOCOL §7).

A channel ``<appkey>::<channel>`` is a capped stream of the same name. A publish is one Lua script: XADD
(capped by length and by age), PEXPIRE (an idle channel disappears after the max age), PUBLISH of
``"<position> <message json>"``. Being one script, a message is either in the history *and* on the wire, or
in neither, which is what makes resuming from a position exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis

from ..positions import START
from .resume import decide_resume

PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'm', ARGV[1])
local max_age = tonumber(ARGV[3])
if max_age > 0 then
  local ms = tonumber(string.match(id, '^(%d+)'))
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', ms - max_age))
  redis.call('PEXPIRE', KEYS[1], max_age)
end
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[1])
end
return id
"""

SCRIPTS = {"publish": PUBLISH_SCRIPT}


def channel_key(app_key: str, channel: str) -> str:
    """The Redis stream and Pub/Sub channel of an app's channel."""
    return f"{app_key}::{channel}"


def split_published(payload: bytes) -> tuple[str, bytes]:
    """A Pub/Sub payload as the publish script sends it: ``b"<position> <message json>"``."""
    position, _, message = payload.partition(b" ")
    return position.decode(), message


@dataclass(frozen=True)
class HistoryPolicy:
    """How much of a channel is kept. ``max_length == 0`` means no replay (pure Pub/Sub); the stream
    still keeps the newest entry so ``rtm/read`` can answer and positions keep increasing."""

    max_length: int
    max_age: int  # seconds; 0 = no age limit

    @property
    def replay(self) -> bool:
        return self.max_length > 0

    # Cached: they go into every publish command (a frozen dataclass still has a __dict__ to cache in).
    @cached_property
    def stored_length(self) -> bytes:
        return b"%d" % max(self.max_length, 1)

    @cached_property
    def max_age_ms(self) -> bytes:
        return b"%d" % (self.max_age * 1000)


def publish_command(
    sha: bytes, key: bytes, message: bytes, policy: HistoryPolicy, deliver: bool = True
) -> bytes:
    """``EVALSHA <sha> 1 <key> <message> <maxlen> <maxage_ms> <deliver>`` in RESP, built without a loop."""
    maxlen = policy.stored_length
    maxage = policy.max_age_ms
    return b"".join(
        (
            b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n",
            sha,
            b"\r\n$1\r\n1\r\n$%d\r\n" % len(key),
            key,
            b"\r\n$%d\r\n" % len(message),
            message,
            b"\r\n$%d\r\n" % len(maxlen),
            maxlen,
            b"\r\n$%d\r\n" % len(maxage),
            maxage,
            b"\r\n$1\r\n1\r\n" if deliver else b"\r\n$1\r\n0\r\n",
        )
    )


def _entries(raw: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[str, bytes]]:
    return [(entry_id.decode(), fields.get(b"m", b"null")) for entry_id, fields in raw]


def entries_after(client: redis.Redis, key: str, position: str, limit: int) -> list[tuple[str, bytes]]:
    """Entries strictly after ``position`` (``"0-0"``: all), oldest first."""
    start = "-" if position == START else "(" + position
    return _entries(client.xrange(key, min=start, max="+", count=limit))


def first_entry(client: redis.Redis, key: str) -> tuple[str, bytes] | None:
    found = _entries(client.xrange(key, min="-", max="+", count=1))
    return found[0] if found else None


def last_entry(client: redis.Redis, key: str) -> tuple[str, bytes] | None:
    found = _entries(client.xrevrange(key, max="+", min="-", count=1))
    return found[0] if found else None


def entry_at(client: redis.Redis, key: str, position: str) -> tuple[str, bytes] | None:
    found = _entries(client.xrange(key, min=position, max=position, count=1))
    return found[0] if found else None


def resume_plan(
    client: redis.Redis, key: str, position: str, policy: HistoryPolicy, limit: int
) -> tuple[list[tuple[str, bytes]], str | None]:
    """What a subscriber resuming after ``position`` must be sent, and whether the position expired
    (see :func:`.resume.decide_resume`): returns (entries, expired_at)."""
    first = last = None
    if position != START:
        first_found, last_found = first_entry(client, key), last_entry(client, key)
        first = first_found[0] if first_found else None
        last = last_found[0] if last_found else None
    decision = decide_resume(position, first, last, policy.replay)
    entries = entries_after(client, key, decision.replay_after, limit) if decision.replay_after else []
    return entries, decision.expired_at
