"""The admin panel's own state, next to the broker config: users, login throttling, its secret key, the
audit log. Brokers never read these keys, so no write here bumps the config version."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis

from .schema import ADMIN_USERS_KEY, AUDIT_KEY, AUDIT_MAX_ENTRIES, PANEL_SECRET_KEY, THROTTLE_PREFIX


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

    def login_failures(self, keys: Iterable[str]) -> list[tuple[int, int]]:
        """(failures, seconds until they are forgotten) per throttle key (``user:<id>`` or ``ip:<addr>``)."""
        keys = [THROTTLE_PREFIX + k for k in keys]
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key).ttl(key)
            results = pipe.execute()
        return [(int(results[i] or 0), max(int(results[i + 1]), 0)) for i in range(0, len(results), 2)]

    def record_login_failure(self, keys: Iterable[str], window_seconds: int) -> None:
        """Count one failure on each key; a key is forgotten ``window_seconds`` after its first failure."""
        with self.redis.pipeline(transaction=True) as pipe:
            for key in keys:
                # SET NX EX then INCR keeps the first failure's expiry (EXPIRE NX needs Redis 7).
                pipe.set(THROTTLE_PREFIX + key, 0, ex=window_seconds, nx=True).incr(THROTTLE_PREFIX + key)
            pipe.execute()

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
