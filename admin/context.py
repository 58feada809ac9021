"""What every view of the panel reaches for: the settings, the config store, the audit log, the time.

The config store is the panel's door into the broker (ARCHITECTURE: ``admin/`` reaches the broker
through ``config_store`` and the cluster's control channel, never its internals); the one live view that
needs this process's engine, the tail, gets a :class:`app.live_tail.LiveTail` handed in by the broker.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app, request
from flask_login import current_user

from app.config_store import ConfigStore, connect
from app.settings import Settings

if TYPE_CHECKING:
    from app.live_tail import LiveTail

T = TypeVar("T")

EXTENSION = "cobra_admin"


class Panel:
    """Per-application state, created by the factory and kept in ``app.extensions``."""

    def __init__(self, settings: Settings, redis_url: str, live_tail: LiveTail | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.live_tail = live_tail  # None: a panel without a broker in its process (no tail)
        # redis-py connects on first use, so building this before a gunicorn fork opens no socket.
        self.store = ConfigStore(connect(redis_url))


def panel() -> Panel:
    return current_app.extensions[EXTENSION]


def store() -> ConfigStore:
    return panel().store


def now() -> float:
    return time.time()


def client_ip() -> str:
    """The client's address, for login throttling and the audit log: the direct peer, unless the setting
    ``admin_trusted_proxies`` says how many proxies of ours append to ``X-Forwarded-For`` — then the
    address the outermost of them saw. Never the header by default: any client can write it, and trusting
    it would let one attacker be a new address per request (and frame someone else's)."""
    peer = request.remote_addr or "-"
    hops = panel().settings.admin_trusted_proxies
    if hops <= 0:
        return peer
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < hops:
        return peer  # not through our proxies: a direct client
    try:
        return str(ipaddress.ip_address(forwarded[-hops]))
    except ValueError:
        return peer


def audit(action: str, app: str = "", target: str = "", **details: Any) -> None:
    """Record one admin change: who, when, from where, what. Callers never pass a secret or a password."""
    user = current_user.name if current_user and current_user.is_authenticated else details.pop("user", "-")
    entry = {
        "ts": f"{now():.3f}",
        "user": str(user),
        "ip": client_ip(),
        "action": action,
        "app": app,
        "target": target,
        "details": "; ".join(f"{k}={v}" for k, v in details.items() if v not in (None, "")),
    }
    store().append_audit(entry)


def run_blocking(function: Callable[..., T], *args: Any) -> T:
    """Run a CPU-heavy call that releases the GIL (scrypt) in gevent's thread pool when the process is
    monkey-patched: the panel shares its process with the broker, and a ~100 ms password hash on the event
    loop would stall every WebSocket of this process for that long."""
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        import gevent

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)
