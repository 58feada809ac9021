"""Channel history in Redis streams, and the one-round-trip publish (PROTOCOL §7): the pure part.

A channel ``<appkey>::<channel>`` (:mod:`app.channels`) is a capped stream of the same name. A publish is one
Lua script: XADD (capped by length and by age), PEXPIRE (an idle channel disappears after the max age),
PUBLISH of ``"<position> <message json>"``. Being one script, a message is either in the history *and* on
the wire, or in neither, which is what makes resuming from a position exact.

This module holds the script, the retention policy and the RESP command that runs it, and no I/O; the
reads of a stream are in :mod:`.streams`, the resume decision in :mod:`.resume`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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


# Most entries one resume or fill replays, whatever the retention settings say: it bounds the memory one
# read takes (a hundred thousand entries of ~1 kB is ~100 MB of Python objects at worst).
REPLAY_LIMIT = 100_000


@dataclass(frozen=True)
class HistoryPolicy:
    """How much of a channel is kept, and on how many nodes before a publish is acknowledged.
    ``max_length == 0`` means no replay (pure Pub/Sub); the stream still keeps the newest entry so
    ``rtm/read`` can answer and positions keep increasing. ``min_replicas == 0`` is durability ``leader``
    (acknowledged once the master holds it); above, ``replicated``: acknowledged once ``WAIT`` saw that
    many replicas take it within ``replication_timeout_ms``."""

    max_length: int
    max_age: int  # seconds; 0 = no age limit
    min_replicas: int = 0
    replication_timeout_ms: int = 1000

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
