"""The configuration, kept in Redis and shared by every broker process and the admin panel.

This module alone knows the Redis layout:

=============================  =======  ======================================================
key                            type     content
=============================  =======  ======================================================
``cobra:config:version``       string   counter bumped by every change
``cobra:config:apps``          hash     app key → JSON of :class:`app.models.App`
``cobra:config:shards``        string   JSON list of :class:`app.models.Shard` (empty = config Redis)
``cobra:config:changes``       channel  the new version is published here after each change
=============================  =======  ======================================================

Every write bumps the version and announces it, in the same MULTI; brokers reload on the announcement and,
as a safety net, whenever a periodic check sees a newer version (a notification can be missed while a
connection is down).

The admin panel keeps its own state next to it. Brokers never read these keys, so writing them bumps no
version and announces nothing:

=====================================  =======  ==============================================================
key                                    type     content
=====================================  =======  ==============================================================
``cobra:admin:users``                  hash     user name → JSON {name, password_hash, session_epoch, ...}
``cobra:admin:secret_key``             string   the panel's Flask SECRET_KEY, made once, shared by all workers
``cobra:admin:throttle:<kind>:<id>``   string   failed logins per user name / per IP, expiring with the window
``cobra:admin:audit``                  stream   one entry per admin change {ts, user, ip, action, app, target,
                                                details}, capped at ``AUDIT_MAX_ENTRIES``; never a secret
=====================================  =======  ==============================================================
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis
import yaml

from .models import (
    PERMISSIONS,
    WELL_KNOWN_APPS,
    App,
    AppSettings,
    ConfigSnapshot,
    Role,
    Shard,
    generate_secret,
)

log = logging.getLogger(__name__)

VERSION_KEY = "cobra:config:version"
APPS_KEY = "cobra:config:apps"
SHARDS_KEY = "cobra:config:shards"
CHANGES_CHANNEL = "cobra:config:changes"

ADMIN_USERS_KEY = "cobra:admin:users"
PANEL_SECRET_KEY = "cobra:admin:secret_key"
THROTTLE_PREFIX = "cobra:admin:throttle:"
AUDIT_KEY = "cobra:admin:audit"
# ~10,000 entries of a few hundred bytes: a few MB of Redis memory for months of admin activity.
AUDIT_MAX_ENTRIES = 10_000


class ConfigError(ValueError):
    """A change that cannot be applied (unknown app, invalid YAML, ...)."""


def connect(url: str, max_connections: int = 64, **kwargs: Any) -> redis.Redis:
    """A redis-py client with timeouts, so a dead Redis fails calls instead of hanging them.

    The pool *blocks* when all its connections are busy: a burst of greenlets (a reconnect storm of a
    thousand subscribes) waits its turn instead of failing with "Too many connections" past redis-py's
    default cap, and Redis never sees more than ``max_connections`` sockets from one process.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 10,
    }
    options.update(kwargs)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=options["socket_timeout"], **options
    )
    return redis.Redis(connection_pool=pool)


class ConfigStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str) -> ConfigStore:
        return cls(connect(url))

    # ------------------------------------------------------------------ reading
    def version(self) -> int:
        return int(self.redis.get(VERSION_KEY) or 0)

    def snapshot(self) -> ConfigSnapshot:
        """Version, apps and shards read together (MULTI), so they belong to one version."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(VERSION_KEY).hgetall(APPS_KEY).get(SHARDS_KEY)
            version, raw_apps, raw_shards = pipe.execute()
        apps = {}
        for key, raw in raw_apps.items():
            try:
                app = App.from_dict(orjson.loads(raw))
            except (ValueError, TypeError, KeyError) as exc:
                # One corrupt entry must not take every app down with it.
                log.error("ignoring unreadable config of app %r: %s", key, exc)
                continue
            apps[app.key] = app
        return ConfigSnapshot(version=int(version or 0), apps=apps, shards=_parse_shards(raw_shards))

    def get_app(self, key: str) -> App | None:
        raw = self.redis.hget(APPS_KEY, key)
        return App.from_dict(orjson.loads(raw)) if raw else None

    def list_apps(self) -> dict[str, App]:
        return self.snapshot().apps

    def shards(self) -> tuple[Shard, ...]:
        return _parse_shards(self.redis.get(SHARDS_KEY))

    # ------------------------------------------------------------------ writing
    def _commit(self, pipe: redis.client.Pipeline) -> int:
        """Queue the version bump and the announcement on ``pipe`` (inside MULTI) and run it."""
        pipe.incr(VERSION_KEY)
        pipe.publish(CHANGES_CHANNEL, b"changed")
        return int(pipe.execute()[-2])

    def put_app(self, app: App) -> int:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(APPS_KEY, app.key, orjson.dumps(app.to_dict()))
            return self._commit(pipe)

    def put_apps(self, apps: Iterable[App]) -> int:
        with self.redis.pipeline(transaction=True) as pipe:
            for app in apps:
                pipe.hset(APPS_KEY, app.key, orjson.dumps(app.to_dict()))
            return self._commit(pipe)

    def delete_app(self, key: str) -> int:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(APPS_KEY, key)
            return self._commit(pipe)

    def update_app(self, key: str, change: Callable[[App], App]) -> App:
        """Read-modify-write of one app, retried if another writer got there first (WATCH)."""
        while True:
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(APPS_KEY)
                    raw = pipe.hget(APPS_KEY, key)
                    if not raw:
                        raise ConfigError(f"no app {key!r}")
                    updated = change(App.from_dict(orjson.loads(raw)))
                    pipe.multi()
                    pipe.hset(APPS_KEY, key, orjson.dumps(updated.to_dict()))
                    self._commit(pipe)
                    return updated
                except redis.WatchError:
                    continue

    def set_shards(self, shards: Iterable[Shard]) -> int:
        shards = list(shards)
        names = [s.name for s in shards]
        if len(set(names)) != len(names):
            raise ConfigError("shard names must be unique")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(SHARDS_KEY, orjson.dumps([s.to_dict() for s in shards]))
            return self._commit(pipe)

    def add_app(self, app: App) -> int:
        """Create ``app``; ConfigError when the key is taken (``put_app`` would silently replace it)."""
        while True:
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(APPS_KEY)
                    if pipe.hexists(APPS_KEY, app.key):
                        raise ConfigError(f"app {app.key!r} already exists")
                    pipe.multi()
                    pipe.hset(APPS_KEY, app.key, orjson.dumps(app.to_dict()))
                    return self._commit(pipe)
                except redis.WatchError:
                    continue

    # ------------------------------------------------------------------ admin panel state (not broker config)
    # Admin users, login throttling, the panel's secret key and the audit log. Brokers never read these,
    # so none of the writes below bumps the config version. Records are opaque JSON documents here:
    # admin/users.py decides what a user is and hashes passwords before they arrive.
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

    def audit_entries(self, count: int, before: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Newest first: up to ``count`` entries strictly older than the entry id ``before``."""
        high = f"({before}" if before else "+"
        entries = self.redis.xrevrange(AUDIT_KEY, max=high, min="-", count=count)
        return [
            (entry_id.decode(), {k.decode(): v.decode(errors="replace") for k, v in fields_.items()})
            for entry_id, fields_ in entries
        ]

    # ------------------------------------------------------------------ well-known apps and YAML
    def ensure_well_known_apps(self) -> dict[str, App]:
        """Create ``_health``, ``_pubsub``, ``_stats`` and ``_admin`` where missing (never overwrite).
        Returns the apps that were created."""
        created = {}
        for key in WELL_KNOWN_APPS:
            app = _well_known_app(key)
            if self.redis.hsetnx(APPS_KEY, key, orjson.dumps(app.to_dict())):
                created[key] = app
        if created:
            with self.redis.pipeline(transaction=True) as pipe:
                self._commit(pipe)
        return created

    def import_yaml(self, text: str) -> list[str]:
        """Load a Cobra ``apps.yaml``; apps in the file replace same-named apps. Returns the app keys."""
        apps = parse_apps_yaml(text)
        self.put_apps(apps)
        return [app.key for app in apps]

    def export_yaml(self) -> str:
        return dump_apps_yaml(self.snapshot().apps.values())


def _well_known_app(key: str) -> App:
    role_name = key.lstrip("_")
    return App(
        key=key, roles={role_name: Role(name=role_name, secret=generate_secret(), permissions=PERMISSIONS)}
    )


def _parse_shards(raw: bytes | None) -> tuple[Shard, ...]:
    if not raw:
        return ()
    try:
        return tuple(Shard(**item) for item in orjson.loads(raw))
    except (ValueError, TypeError) as exc:
        log.error("ignoring unreadable shard list: %s", exc)
        return ()


def parse_apps_yaml(text: str) -> list[App]:
    """``apps: {APPKEY: {roles: {ROLE: {secret, permissions: [...]}}}}`` (the Cobra format), plus our
    optional ``channels`` per role and ``settings`` per app."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("apps"), dict):
        raise ConfigError("expected a mapping with an 'apps' mapping at the top")
    apps = []
    for key, spec in document["apps"].items():
        spec = spec or {}
        if not isinstance(spec, dict) or not isinstance(spec.get("roles") or {}, dict):
            raise ConfigError(f"app {key!r}: expected a mapping with a 'roles' mapping")
        try:
            roles = {}
            for name, role in (spec.get("roles") or {}).items():
                if not isinstance(role, dict):
                    raise ValueError(f"role {name!r} must be a mapping")
                roles[str(name)] = Role(
                    name=str(name),
                    secret=str(role.get("secret") or ""),
                    permissions=tuple(role.get("permissions") or ()),
                    channels=tuple(role.get("channels") or ("*",)),
                )
            apps.append(
                App(key=str(key), roles=roles, settings=AppSettings.from_dict(spec.get("settings") or {}))
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"app {key!r}: {exc}") from None
    return apps


def dump_apps_yaml(apps: Iterable[App]) -> str:
    document: dict[str, Any] = {"apps": {}}
    for app in sorted(apps, key=lambda a: a.key):
        roles = {}
        for name, role in app.roles.items():
            entry: dict[str, Any] = {"secret": role.secret, "permissions": list(role.permissions)}
            if role.channels != ("*",):
                entry["channels"] = list(role.channels)
            roles[name] = entry
        spec: dict[str, Any] = {"roles": roles}
        settings = {k: v for k, v in app.settings.to_dict().items() if v not in (None, [])}
        if settings:
            spec["settings"] = settings
        document["apps"][app.key] = spec
    return yaml.safe_dump(document, sort_keys=False)


class ConfigWatcher:
    """Keeps a process's view of the config current: reload on announcements, and poll as a safety net.

    ``on_change(snapshot)`` runs in the watcher's greenlet for every new version. While Redis is down the
    last good snapshot stays in force; the reload happens as soon as Redis answers again.
    """

    def __init__(
        self,
        store: ConfigStore,
        on_change: Callable[[ConfigSnapshot], None],
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.version = -1
        self._greenlets: list[Any] = []

    def load(self) -> ConfigSnapshot:
        snapshot = self.store.snapshot()
        self.version = snapshot.version
        return snapshot

    def start(self) -> None:
        import gevent

        self._greenlets = [gevent.spawn(self._listen), gevent.spawn(self._poll)]

    def stop(self) -> None:
        import gevent

        gevent.killall(self._greenlets, block=False)

    def check(self) -> None:
        if self.store.version() != self.version:
            snapshot = self.store.snapshot()
            if snapshot.version != self.version:
                self.version = snapshot.version
                self.on_change(snapshot)

    def _poll(self) -> None:
        import gevent

        failing = False
        while True:
            gevent.sleep(self.poll_interval)
            try:
                self.check()
                if failing:
                    log.info("config store reachable again; config is current")
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    log.warning("config store unreachable, keeping the last config: %s", exc)
                failing = True
            except Exception:
                log.exception("config reload failed; keeping the last config")

    def _listen(self) -> None:
        import gevent

        while True:
            pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANGES_CHANNEL)
                self.check()  # anything missed while not subscribed
                while True:
                    message = pubsub.get_message(timeout=30.0)
                    if message is not None:
                        self.check()
            except redis.RedisError:
                gevent.sleep(min(self.poll_interval, 1.0))
            except Exception:
                log.exception("config listener failed; restarting it")
                gevent.sleep(1.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass


def wait_for_redis(client: redis.Redis, timeout: float, what: str = "Redis") -> None:
    """Retry PING until it answers or ``timeout`` passes; then fail with a clear message."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            if time.monotonic() >= deadline:
                raise ConfigError(f"{what} did not answer within {timeout:.0f}s: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
