"""``python -m app run``: the broker and the admin panel in one process, on an embedded Redis if need be."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..bootstrap import prepare_store
from ..config_store import ConfigError, ConfigStore, wait_for_redis
from ..embedded_redis import EmbeddedRedis
from ..logs import setup_logging
from ..server import serve
from ..settings import Settings, add_settings_arguments, settings_from_args
from .audit import cli_actor, record

log = logging.getLogger("app.run")


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="serve the broker (WebSocket + HTTP + admin panel)")
    add_settings_arguments(run)
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    setup_logging(settings)
    embedded = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(settings.state_path)
        url = embedded.start()
        log.info("embedded Redis at %s (data in %s)", url, embedded.data_dir)
    try:
        store = ConfigStore.from_url(url)
        try:
            wait_for_redis(store.redis, settings.redis_wait_timeout, "the config Redis")
            # The apps.yaml of COBRA_APPS_CONFIG and the well-known apps: prepared here, before the banner,
            # and again (a no-op then) by the application's start, as under gunicorn.
            prepare_store(store, settings.apps_config, who=cli_actor())
            first_admin = _ensure_first_admin(store)
            if first_admin is not None:
                record(store, "user.create", target=first_admin[0], first_admin=True)
        except (ConfigError, OSError) as exc:
            log.error("%s", exc)
            return 1
        return serve(settings, url, on_ready=lambda: print_banner(settings, url, embedded, first_admin))
    finally:
        if embedded is not None:
            embedded.stop()


def _ensure_first_admin(store: ConfigStore) -> tuple[str, str] | None:
    """(name, password) of an admin user created now, when the store has none yet."""
    try:
        from admin.users import ensure_first_admin
    except ImportError:
        return None
    return ensure_first_admin(store)


def print_banner(
    settings: Settings, redis_url: str, embedded: EmbeddedRedis | None, first_admin: tuple[str, str] | None
) -> None:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = f"{host}:{settings.port}"
    lines = [
        "",
        "Cobra broker is running.",
        f"  WebSocket endpoint : ws://{base}/v2?appkey=<APPKEY>   (try appkey=_pubsub)",
        f"  Admin panel        : http://{base}/admin/",
        f"  Health             : http://{base}/health/   or   python -m app health --endpoint ws://{base}/v2",
        f"  Config Redis       : {'embedded, ' if embedded else ''}{_hide_password(redis_url)}",
    ]
    if first_admin is not None:
        name, password = first_admin
        lines.append(f"  First admin user   : {name} / {password}   (shown once; change it in the panel)")
    lines.append("  App keys and role secrets: python -m app export-config")
    lines.append("")
    print("\n".join(lines), flush=True)


def _hide_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
