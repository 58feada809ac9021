"""Keeping a process's view of the config current, and waiting for Redis at start-up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from ..models import ConfigSnapshot
from .schema import CHANGES_CHANNEL, ConfigError
from .store import ConfigStore

log = logging.getLogger(__name__)


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
        self._warned_empty = False
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
            if snapshot.version == self.version:
                return
            if snapshot.version == 0 and not snapshot.apps and self.version > 0:
                # The version counter only grows, so an empty store after a loaded one means Redis came
                # back without its data (no persistence, FLUSHALL). Applying that would lock every client
                # out; serving the last config until an admin writes a new one is the safer failure.
                if not self._warned_empty:
                    log.error(
                        "the config store is empty (Redis restarted without its data?); keeping the last "
                        "config until a new one is written (python -m app import-config FILE)"
                    )
                    self._warned_empty = True
                return
            self._warned_empty = False
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
        from ..channel_listener import listen_forever

        listen_forever(
            self.store.redis,
            CHANGES_CHANNEL,
            lambda _data: self.check(),
            "config listener",
            on_subscribed=self.check,  # anything missed while not subscribed
            retry_delay=min(self.poll_interval, 1.0),
        )


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
