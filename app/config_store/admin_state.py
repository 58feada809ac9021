"""The admin panel's own state, next to the broker config: users, login throttling, its secret key, the
audit log. Brokers never read these keys, so no write here bumps the config version."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis

from .schema import (
    ADMIN_USERS_KEY,
    AUDIT_KEY,
    AUDIT_MAX_ENTRIES,
    PANEL_SECRET_KEY,
    SESSION_PREFIX,
    THROTTLE_PREFIX,
)

# KEYS[1]: the address counter, KEYS[2]: the (user, address) hash {failures, until}.
# ARGV: address limit, window, free failures, base delay, max delay. Returns 0 or seconds to wait.
_BEGIN_ATTEMPT = """
if redis.replicate_commands then redis.replicate_commands() end
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local free, base, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local attempts = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], window) end
if attempts > limit then
  return math.max(1, redis.call('TTL', KEYS[1]))
end
local locked_until = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
if now < locked_until then
  return math.max(1, math.ceil(locked_until - now))
end
local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
if failures >= free then
  local delay = math.min(base * 2 ^ (failures - free), cap)
  redis.call('HSET', KEYS[2], 'until', tostring(now + delay))
  redis.call('EXPIRE', KEYS[2], math.ceil(delay + window))
else
  redis.call('EXPIRE', KEYS[2], window)
end
return 0
"""
_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class AdminState:
    """Mixed into :class:`ConfigStore`; records are opaque JSON documents here: admin/users.py decides what a
    user is and hashes passwords before they arrive."""

    redis: redis.Redis

    def admin_users(self) -> dict[str, dict[str, Any]]:
        return {name.decode(): orjson.loads(raw) for name, raw in self.redis.hgetall(ADMIN_USERS_KEY).items()}

    def admin_user(self, name: str) -> dict[str, Any] | None:
        raw = self.redis.hget(ADMIN_USERS_KEY, name)
        return orjson.loads(raw) if raw else None

    def put_admin_user(self, record: dict[str, Any]) -> None:
        self.redis.hset(ADMIN_USERS_KEY, record["name"], orjson.dumps(record))

    def add_first_admin_user(self, record: dict[str, Any]) -> bool:
        """Store ``record`` only if there is no admin user yet (two processes starting at once make one)."""
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(ADMIN_USERS_KEY)
                if pipe.hlen(ADMIN_USERS_KEY):
                    return False
                pipe.multi()
                pipe.hset(ADMIN_USERS_KEY, record["name"], orjson.dumps(record))
                pipe.execute()
                return True
            except redis.WatchError:
                return False  # someone else created a user meanwhile

    def delete_admin_user(self, name: str) -> bool:
        return bool(self.redis.hdel(ADMIN_USERS_KEY, name))

    def panel_secret_key(self) -> str:
        """The Flask SECRET_KEY: made by whichever process asks first, then shared by every process, so a
        session cookie signed by one gunicorn worker is valid on the others and across restarts."""
        self.redis.set(PANEL_SECRET_KEY, secrets.token_hex(32), nx=True)
        return self.redis.get(PANEL_SECRET_KEY).decode()

    def begin_login_attempt(
        self,
        address_key: str,
        pair_key: str,
        *,
        address_limit: int,
        window_seconds: int,
        free_failures: int,
        base_delay: float,
        max_delay: float,
    ) -> int:
        """Reserve one login attempt, atomically, before its password is checked: 0 when it may go on,
        else the seconds to wait. A burst of parallel guesses is counted one by one inside Redis (one Lua
        script), so 80 guesses in flight count as 80 whichever worker or greenlet runs them.

        ``address_key`` (``ip:<addr>``) counts every attempt from an address; past ``address_limit`` in
        ``window_seconds`` (from its first) the address is refused. ``pair_key`` (``pair:<user>:<addr>``)
        counts the attempts of one user name from one address: from the ``free_failures``-th on, each
        attempt sets a delay before the next one is taken, ``base_delay`` doubling per attempt up to
        ``max_delay``. A stranger's failures thus lock out only the stranger's own address, never the
        owner of the name logging in from elsewhere. A success gives the attempt back
        (:meth:`end_login_attempt`)."""
        result = self.redis.eval(
            _BEGIN_ATTEMPT,
            2,
            THROTTLE_PREFIX + address_key,
            THROTTLE_PREFIX + pair_key,
            address_limit,
            window_seconds,
            free_failures,
            base_delay,
            max_delay,
        )
        return int(result)

    def end_login_attempt(self, address_key: str, pair_key: str) -> None:
        """A reserved attempt that logged in: the pair's failures are forgotten and the address gets its
        attempt back (people behind one office NAT log in all day)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(THROTTLE_PREFIX + pair_key)
            pipe.eval(_GIVE_BACK, 1, THROTTLE_PREFIX + address_key)
            pipe.execute()

    def login_attempts(self, key: str) -> int:
        """Attempts counted on a throttle key (an address's, or a pair's failures): for tests and tools."""
        full = THROTTLE_PREFIX + key
        kind = self.redis.type(full)
        if kind == b"hash":
            return int(self.redis.hget(full, "failures") or 0)
        return int(self.redis.get(full) or 0) if kind == b"string" else 0

    def open_admin_session(self, name: str, lifetime_seconds: int) -> str:
        """A new server-side session of user ``name``: its id, which the signed cookie carries. The cookie
        alone is no longer a session: ending the id here (logout) ends it everywhere, copies included."""
        session_id = secrets.token_urlsafe(24)
        self.redis.set(SESSION_PREFIX + session_id, name, ex=max(1, int(lifetime_seconds)))
        return session_id

    def admin_session_user(self, session_id: str) -> str | None:
        """The user name of a live session id; None once it was closed or has expired."""
        if not isinstance(session_id, str) or not session_id or len(session_id) > 64:
            return None
        raw = self.redis.get(SESSION_PREFIX + session_id)
        return raw.decode() if raw else None

    def close_admin_session(self, session_id: str) -> None:
        if isinstance(session_id, str) and session_id:
            self.redis.delete(SESSION_PREFIX + session_id)

    def clear_login_failures(self, keys: Iterable[str]) -> None:
        keys = [THROTTLE_PREFIX + k for k in keys]
        if keys:
            self.redis.delete(*keys)

    def append_audit(self, entry: dict[str, str]) -> str:
        """Append one audit entry (flat strings); the oldest fall off beyond ``AUDIT_MAX_ENTRIES``."""
        return self.redis.xadd(AUDIT_KEY, entry, maxlen=AUDIT_MAX_ENTRIES, approximate=True).decode()

    def record_change(
        self, actor: str, action: str, app: str = "", target: str = "", ip: str = "-", **details: object
    ) -> str:
        """Append the audit entry of one change, in the shape the panel writes (``admin.context.audit``):
        the CLI (actor ``cli:<OS user>``) and the start-up import of ``COBRA_APPS_CONFIG`` (actor
        ``apps-config:<path>``) record their changes here too. Callers never pass a secret."""
        entry = {
            "ts": f"{time.time():.3f}",
            "user": actor,
            "ip": ip,
            "action": action,
            "app": app,
            "target": target,
            "details": "; ".join(f"{k}={v}" for k, v in details.items() if v not in (None, "")),
        }
        return self.append_audit(entry)

    def audit_entries(self, count: int, before: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Newest first: up to ``count`` entries strictly older than the entry id ``before``."""
        high = f"({before}" if before else "+"
        entries = self.redis.xrevrange(AUDIT_KEY, max=high, min="-", count=count)
        return [
            (entry_id.decode(), {k.decode(): v.decode(errors="replace") for k, v in fields_.items()})
            for entry_id, fields_ in entries
        ]
