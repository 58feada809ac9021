"""The configuration, kept in Redis and shared by every broker process and the admin panel.

This package alone knows the Redis layout (``schema`` names every key):

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
``cobra:admin:audit``                  stream   one entry per change {ts, user, ip, action, app, target,
                                                details} from the panel, the CLI (user ``cli:<OS user>``) or
                                                ``COBRA_APPS_CONFIG`` (``apps-config:<path>``), capped at
                                                ``AUDIT_MAX_ENTRIES``; never a secret
=====================================  =======  ==============================================================
"""

from .apps_yaml import ParsedApps, dump_apps_yaml, parse_apps_yaml, read_apps_yaml
from .schema import (
    ADMIN_USERS_KEY,
    APPS_KEY,
    AUDIT_KEY,
    AUDIT_MAX_ENTRIES,
    CHANGES_CHANNEL,
    PANEL_SECRET_KEY,
    SHARDS_KEY,
    THROTTLE_PREFIX,
    VERSION_KEY,
    ConfigError,
    connect,
)
from .store import ConfigStore
from .watcher import ConfigWatcher, wait_for_redis

__all__ = [
    "ADMIN_USERS_KEY",
    "APPS_KEY",
    "AUDIT_KEY",
    "AUDIT_MAX_ENTRIES",
    "CHANGES_CHANNEL",
    "PANEL_SECRET_KEY",
    "SHARDS_KEY",
    "THROTTLE_PREFIX",
    "VERSION_KEY",
    "ConfigError",
    "ConfigStore",
    "ConfigWatcher",
    "ParsedApps",
    "connect",
    "dump_apps_yaml",
    "parse_apps_yaml",
    "read_apps_yaml",
    "wait_for_redis",
]
