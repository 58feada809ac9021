"""What a config store needs before brokers serve from it, done the same way under every way of running.

``python -m app run``, every gunicorn worker and ``python -m app init`` call :func:`prepare_store`:
the well-known apps (``_health``, ``_pubsub``, ``_stats``, ``_admin``) exist, and the Cobra ``apps.yaml``
named by ``COBRA_APPS_CONFIG`` is loaded **once per cluster and per content of the file**: the first process
to start takes a short Redis lock, imports it and records its digest; the others (and later restarts with
the same file) see the digest and leave the store alone, so per-app settings an admin changed since in the
panel or the CLI (limits, history) survive restarts. An edited file is imported again: its apps' roles
and secrets replace the stored ones, their per-app settings are kept.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace

import gevent

from .config_store import ConfigStore
from .config_store.apps_yaml import parse_apps_yaml

log = logging.getLogger(__name__)

APPS_CONFIG_DIGEST_KEY = "cobra:config:apps_config_digest"  # sha256 of the apps.yaml last imported
BOOTSTRAP_LOCK_KEY = "cobra:config:bootstrap_lock"
LOCK_SECONDS = 30.0  # an import of a large apps.yaml takes well under a second


def prepare_store(store: ConfigStore, apps_config: str = "", who: str = "") -> None:
    """Make the store ready to serve (idempotent, safe for many processes starting at once). Raises
    OSError when ``apps_config`` cannot be read and ConfigError when it is invalid."""
    text = None
    if apps_config:
        with open(apps_config, encoding="utf-8") as f:
            text = f.read()
    with _cluster_lock(store):
        if text is not None:
            _load_apps_config(store, apps_config, text)
        created = store.ensure_well_known_apps()
        if created:
            store.record_change(who or "broker", "config.init", apps=",".join(sorted(created)))
            log.info("created the well-known apps %s", ", ".join(sorted(created)))


def _load_apps_config(store: ConfigStore, path: str, text: str) -> None:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if (store.redis.get(APPS_CONFIG_DIGEST_KEY) or b"").decode() == digest:
        log.info("%s: already loaded (unchanged since); %d app(s) in the store", path, len(store.list_apps()))
        return
    # Legacy secrets are accepted here (each one logged): this file is how Cobra deployments migrate, and
    # refusing it at start would lock their clients out; import-config refuses them.
    apps = parse_apps_yaml(text, allow_legacy_secrets=True)
    existing = store.list_apps()
    merged = [
        replace(app, settings=existing[app.key].settings) if app.key in existing else app for app in apps
    ]
    store.put_apps(merged)
    store.redis.set(APPS_CONFIG_DIGEST_KEY, digest)
    if any(existing.get(app.key) != app for app in merged):
        store.record_import(f"apps-config:{path}", merged, existing)
    log.info("loaded %d app(s) from %s: %s", len(merged), path, ", ".join(sorted(a.key for a in merged)))


class _cluster_lock:
    """One process at a time prepares the store; the others wait for it (then find nothing to do). A
    process that dies holding the lock frees it after LOCK_SECONDS."""

    def __init__(self, store: ConfigStore) -> None:
        self.redis = store.redis
        self.token = f"{time.time()}-{id(self)}"

    def __enter__(self) -> None:
        deadline = time.monotonic() + LOCK_SECONDS
        while not self.redis.set(BOOTSTRAP_LOCK_KEY, self.token, nx=True, px=int(LOCK_SECONDS * 1000)):
            if time.monotonic() > deadline:
                log.warning("the bootstrap lock is still held after %.0f s; going ahead", LOCK_SECONDS)
                return
            gevent.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if (self.redis.get(BOOTSTRAP_LOCK_KEY) or b"").decode() == self.token:
            self.redis.delete(BOOTSTRAP_LOCK_KEY)
