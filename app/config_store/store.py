"""Reading and changing the broker configuration: apps, roles, settings, shards."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import orjson
import redis

from ..models import PERMISSIONS, WELL_KNOWN_APPS, App, ConfigSnapshot, Role, Shard, generate_secret
from .admin_state import AdminState
from .apps_yaml import dump_apps_yaml, parse_apps_yaml
from .schema import APPS_KEY, CHANGES_CHANNEL, SHARDS_KEY, VERSION_KEY, ConfigError, connect

log = logging.getLogger(__name__)


class ConfigStore(AdminState):
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

    def app_keys(self) -> set[str]:
        """The keys of every app, without reading (and parsing) their configs."""
        return {key.decode() for key in self.redis.hkeys(APPS_KEY)}

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

    def set_shards(self, shards: Iterable[Shard], expected: Iterable[Shard] | None = None) -> int:
        """Replace the shard list. With ``expected`` (the list the change was computed from), refuse with a
        ConfigError when someone else changed it meanwhile, rather than silently undo their change."""
        shards = list(shards)
        names = [s.name for s in shards]
        if len(set(names)) != len(names):
            raise ConfigError("shard names must be unique")
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                if expected is not None:
                    pipe.watch(SHARDS_KEY)
                    if list(_parse_shards(pipe.get(SHARDS_KEY))) != list(expected):
                        raise ConfigError("the shard list was changed meanwhile; look at it again and retry")
                    pipe.multi()
                pipe.set(SHARDS_KEY, orjson.dumps([s.to_dict() for s in shards]))
                return self._commit(pipe)
            except redis.WatchError:
                raise ConfigError(
                    "the shard list was changed meanwhile; look at it again and retry"
                ) from None

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

    def import_yaml(
        self, text: str, *, actor: str | None = None, allow_legacy_secrets: bool = False
    ) -> list[str]:
        """Load a Cobra ``apps.yaml``; apps in the file replace same-named apps. Returns the app keys.
        With ``actor``, the import is recorded in the audit log (``config.import``) under that name."""
        apps = parse_apps_yaml(text, allow_legacy_secrets=allow_legacy_secrets)
        existing = self.list_apps() if actor else {}
        self.put_apps(apps)
        # A file loaded at every start changes nothing most times: only a change is worth an entry.
        if actor and any(existing.get(app.key) != app for app in apps):
            self.record_import(actor, apps, existing)
        return [app.key for app in apps]

    def record_import(self, actor: str, apps: Iterable[App], existing: Iterable[str], ip: str = "-") -> str:
        """The audit entry of an import, shaped like the panel's: which apps were new, which replaced."""
        existing = set(existing)
        keys = sorted(app.key for app in apps)
        return self.record_change(
            actor,
            "config.import",
            ip=ip,
            new=",".join(k for k in keys if k not in existing) or "none",
            replaced=",".join(k for k in keys if k in existing) or "none",
        )

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
