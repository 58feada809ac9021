"""Every Redis key of the configuration (see the package docstring), and how to reach that Redis."""

from __future__ import annotations

from typing import Any

import redis

VERSION_KEY = "cobra:config:version"
APPS_KEY = "cobra:config:apps"
SHARDS_KEY = "cobra:config:shards"
CHANGES_CHANNEL = "cobra:config:changes"

ADMIN_USERS_KEY = "cobra:admin:users"
PANEL_SECRET_KEY = "cobra:admin:secret_key"
THROTTLE_PREFIX = "cobra:admin:throttle:"
SESSION_PREFIX = "cobra:admin:session:"  # + a session id: the user name, while that session lasts
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
