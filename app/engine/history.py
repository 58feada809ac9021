"""Channel history in Redis streams, and the one-round-trip publish (PROTOCOL §7): the pure part.

A channel ``<appkey>::<channel>`` (:mod:`app.channels`) is a capped stream of the same name. A publish is one
Lua script: XADD (capped by length and by age), PEXPIRE (an idle channel disappears after the max age),
PUBLISH of ``"<position> <message json>"``. Being one script, a message is either in the history *and* on
the wire, or in neither, which is what makes resuming from a position exact.

This module holds the script, the retention policy and the RESP command that runs it, and no I/O; the
reads of a stream are in :mod:`.streams`, the resume decision in :mod:`.resume`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from ..protocol import ErrorCode
from .errors import EngineError

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

# The publish of an app with byte budgets (:mod:`.budget` says why and how): the same XADD, PEXPIRE and
# PUBLISH, but the oldest entries are dropped by this script itself, so that it knows their sizes.
# KEYS: the stream, the app's sizes hash (field "" = the app's total on this shard, field <stream> = that
# stream's bytes), the app's expiry sorted set (stream -> when its key expires, ms).
# ARGV: message, max length (>= 1), max age (ms, 0 = none), deliver ("1"/"0"), max bytes per channel
# (0 = none), max bytes of the app on this shard (0 = none).
BUDGET_PUBLISH_SCRIPT = """
local key, sizes, expiry = KEYS[1], KEYS[2], KEYS[3]
local message = ARGV[1]
local size = string.len(message)
local max_length, max_age = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_bytes, app_max = tonumber(ARGV[5]), tonumber(ARGV[6])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Channels whose key expired (idle past max age) leave the app's total: a few per publish keeps up,
-- since each publish adds at most one channel; a publish about to be refused reaps more first (below).
local total = tonumber(redis.call('HGET', sizes, '') or '0')
local function reap(most)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, most)
  for _, stream in ipairs(gone) do
    if redis.call('EXISTS', stream) == 0 then
      total = total - tonumber(redis.call('HGET', sizes, stream) or '0')
      redis.call('HDEL', sizes, stream)
    end
    redis.call('ZREM', expiry, stream)
  end
  return #gone
end
reap(16)
local recorded = tonumber(redis.call('HGET', sizes, key) or '0')
local bytes, count = recorded, redis.call('XLEN', key)
if count == 0 then bytes = 0 end
-- Decide which oldest entries go (too many, too many bytes, too old), reading them to learn their sizes.
local oldest_kept_ms = max_age > 0 and (now - max_age) or nil
local first_kept, after, page = nil, '-', 2
while count > 0 do
  local entries = redis.call('XRANGE', key, after, '+', 'COUNT', page)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local entry_id, entry_size = entry[1], 0
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'm' then entry_size = string.len(fields[i + 1]) end
    end
    local too_old = oldest_kept_ms and tonumber(string.match(entry_id, '^(%d+)')) < oldest_kept_ms
    if count + 1 > max_length or (max_bytes > 0 and bytes + size > max_bytes) or too_old then
      count = count - 1
      bytes = math.max(bytes - entry_size, 0)
    else
      first_kept = entry_id
      break
    end
    after = '(' .. entry_id
  end
  if first_kept then break end
  page = math.min(page * 4, 256)
end
local new_total = math.max(total - recorded, 0) + bytes + size
-- Before refusing, the app's other expired channels leave the total (at most 1024 more per publish): many
-- channels that expired together free the budget at once, not 16 refused publishes later.
local rounds = 0
while app_max > 0 and new_total > app_max and rounds < 16 and reap(64) > 0 do
  rounds = rounds + 1
  recorded = tonumber(redis.call('HGET', sizes, key) or '0')  -- reaped too if this channel had expired
  new_total = math.max(total - recorded, 0) + bytes + size
end
if app_max > 0 and new_total > app_max then
  redis.call('HSET', sizes, '', total)
  return redis.error_reply('COBRA_APP_HISTORY_FULL ' .. string.format('%d', app_max))
end
if count == 0 then
  redis.call('XTRIM', key, 'MAXLEN', 0)  -- not DEL: the stream keeps its last id, positions keep growing
elseif first_kept then
  redis.call('XTRIM', key, 'MINID', first_kept)
end
local id = redis.call('XADD', key, '*', 'm', message)
if max_age > 0 then
  redis.call('PEXPIRE', key, max_age)
  redis.call('ZADD', expiry, now + max_age, key)
else
  redis.call('ZADD', expiry, '+inf', key)
end
redis.call('HSET', sizes, '', new_total, key, bytes + size)
if ARGV[4] == '1' then
  redis.call('PUBLISH', key, id .. ' ' .. message)
end
return id
"""

# The budgeted publish's refusal (an error reply "COBRA_APP_HISTORY_FULL <limit>"), and what a client gets.
APP_HISTORY_FULL = "COBRA_APP_HISTORY_FULL"


def app_history_full(reply: str) -> EngineError:
    """PROTOCOL §9 has no code for a full quota; ``rate_limited`` says what to do about it: the app's
    history ages out (history_max_age), so publishing again later succeeds."""
    limit = reply.split()[1] if len(reply.split()) > 1 else "?"
    return EngineError(
        f"the app's history is at its budget of {limit} bytes on this shard (app_history_max_bytes); "
        "retry once older messages expire",
        ErrorCode.RATE_LIMITED,
    )


# ``rtm/delete`` on a shard that keeps byte accounting: the channel's key goes, and with it its bytes from
# the app's total (else a deleted channel would hold the app's budget until the total was rebuilt), in one
# script so that no budgeted publish runs in between. KEYS: the stream, the app's sizes hash and expiry set
# (as BUDGET_PUBLISH_SCRIPT). Returns what DEL returns.
DELETE_SCRIPT = """
local key, sizes, expiry = KEYS[1], KEYS[2], KEYS[3]
local recorded = redis.call('HGET', sizes, key)
if recorded then
  local total = tonumber(redis.call('HGET', sizes, '') or '0')
  redis.call('HSET', sizes, '', math.max(total - tonumber(recorded), 0))
  redis.call('HDEL', sizes, key)
end
redis.call('ZREM', expiry, key)
return redis.call('DEL', key)
"""

SCRIPTS = {"publish": PUBLISH_SCRIPT, "budget_publish": BUDGET_PUBLISH_SCRIPT}


def accounting_key_names(app_key: str) -> tuple[str, str]:
    """The app's byte accounting keys on a shard: its sizes hash and its expiry sorted set."""
    return f"cobra:history:{app_key}:bytes", f"cobra:history:{app_key}:expiry"


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
    # Byte budgets (0 = none), see :mod:`.budget`: the messages kept per channel, and the app's history on
    # one shard; ``app_key`` names the app's accounting keys.
    max_bytes: int = 0
    app_max_bytes: int = 0
    app_key: str = ""
    min_replicas: int = 0
    replication_timeout_ms: int = 1000

    @cached_property
    def budgeted(self) -> bool:
        return bool(self.max_bytes or self.app_max_bytes) and bool(self.app_key)

    def unbudgeted(self) -> HistoryPolicy:
        """The same policy without its byte budgets (the same object every time: a shard kind without the
        budget script asks for it per publish, and its command frames are cached on it)."""
        plain = self.__dict__.get("_unbudgeted")
        if plain is None:
            plain = self.__dict__["_unbudgeted"] = replace(self, max_bytes=0, app_max_bytes=0)
        return plain

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

    @cached_property
    def budget_tail(self) -> bytes:
        """The RESP of the two byte budgets, the last arguments of a budgeted publish."""
        first, second = b"%d" % self.max_bytes, b"%d" % self.app_max_bytes
        return b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(first), first, len(second), second)

    @cached_property
    def accounting_keys(self) -> bytes:
        """The RESP of the app's two accounting keys (KEYS[2], KEYS[3] of the budgeted publish)."""
        sizes, expiry = (name.encode() for name in accounting_key_names(self.app_key))
        return b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(sizes), sizes, len(expiry), expiry)

    def command_frame(self, sha: bytes, deliver: bool) -> tuple[bytes, bytes, bytes]:
        """What every publish command of this policy shares, around its key and its message: the head
        (up to the key), what follows the key, and what follows the message. Cached per script and
        ``deliver``: building them costs ~0.7 us, a lookup ~0.05 us, per publish."""
        frames = self.__dict__.get("_frames")
        if frames is None:
            frames = self.__dict__["_frames"] = {}
        frame = frames.get((sha, deliver))
        if frame is None:
            maxlen, maxage = self.stored_length, self.max_age_ms
            flag = b"1" if deliver else b"0"
            rest = b"\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$1\r\n%b\r\n" % (
                len(maxlen),
                maxlen,
                len(maxage),
                maxage,
                flag,
            )
            if self.budgeted:
                head = b"*12\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$1\r\n3\r\n" % sha
                frame = (head, b"\r\n" + self.accounting_keys, rest + self.budget_tail)
            else:
                head = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$1\r\n1\r\n" % sha
                frame = (head, b"\r\n", rest)
            frames[(sha, deliver)] = frame
        return frame


def publish_command(
    sha: bytes, key: bytes, message: bytes, policy: HistoryPolicy, deliver: bool = True
) -> bytes:
    """``EVALSHA <sha> 1 <key> <message> <maxlen> <maxage_ms> <deliver>`` in RESP, or for a budgeted
    policy ``EVALSHA <sha> 3 <key> <sizes> <expiry> <message> <maxlen> <maxage_ms> <deliver> <max_bytes>
    <app_max_bytes>`` (:data:`BUDGET_PUBLISH_SCRIPT`, ``sha`` being that script's); one join per publish."""
    head, after_key, rest = policy.command_frame(sha, deliver)
    return b"".join((head, b"$%d\r\n" % len(key), key, after_key, b"$%d\r\n" % len(message), message, rest))


def budget_publish_command(
    sha: bytes, key: bytes, message: bytes, policy: HistoryPolicy, deliver: bool = True
) -> bytes:
    """The command of :data:`BUDGET_PUBLISH_SCRIPT` for a budgeted ``policy`` (:func:`publish_command`)."""
    assert policy.budgeted
    return publish_command(sha, key, message, policy, deliver)
