"""The configuration data model shared by the broker and the admin panel.

Plain values with dict round-trips; only :mod:`app.config_store` knows how they are laid out in Redis.
Unknown keys in stored documents are ignored so that older brokers keep working with a newer panel.
"""

from __future__ import annotations

import math
import re
import secrets
import string
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .redis_cluster_url import is_cluster_url, parse_cluster_url
from .stream_sql import FilterError, StreamFilter, compile_filter
from .stream_sql.lexer import CHANNEL, KEYWORDS, tokens

PERMISSIONS: tuple[str, ...] = ("publish", "subscribe", "unsubscribe", "read", "write", "delete", "admin")

# The well-known apps of the Cobra tooling (`cobra health`, `cobra monitor`, the admin app).
WELL_KNOWN_APPS: tuple[str, ...] = ("_health", "_pubsub", "_stats", "_admin")
ADMIN_APP = "_admin"
STATS_APP = "_stats"

# App keys and role names travel in URLs, Redis keys and YAML: keep them to a safe alphabet.
MAX_SETTING = 2**63  # Redis and the JSON in the store hold signed 64-bit numbers; inf/nan not at all
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


# Bounds of a role secret written by an import: below 16 characters a secret can be guessed offline from one
# recorded handshake (the HMAC of the nonce); above 256 it is a pasted file, not a secret. Secrets already
# stored are never refused (a broker must keep loading what it was given).
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is refused as a new role secret (its length, never its content), or None."""
    if len(secret) < MIN_SECRET_LENGTH:
        return f"its secret is {len(secret)} characters, fewer than {MIN_SECRET_LENGTH}"
    if len(secret) > MAX_SECRET_LENGTH:
        return f"its secret is {len(secret)} characters, more than {MAX_SECRET_LENGTH}"
    return None


def role_warnings(role: Role) -> list[str]:
    """What is odd but allowed about a role: a role with no permission authenticates and can do nothing."""
    if not role.permissions:
        return [f"role {role.name!r} has no permissions: its clients can authenticate but do nothing"]
    return []


def generate_secret(length: int = 32) -> str:
    """A fresh role secret: 32 characters from a CSPRNG (as ``cobra init`` does)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def generate_appkey() -> str:
    return secrets.token_hex(16)


def validate_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{kind} must be 1-64 characters of letters, digits, '_', '.', '-'")
    return name


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Role:
    name: str
    secret: str
    permissions: tuple[str, ...] = PERMISSIONS
    # Glob patterns of channels this role may touch (PROTOCOL §4, "Better"); "*" = all.
    channels: tuple[str, ...] = ("*",)
    # During a rotation the previous secret keeps authenticating until this Unix time.
    previous_secret: str | None = None
    previous_secret_expires_at: float | None = None

    def __post_init__(self) -> None:
        validate_name("role name", self.name)
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("a role needs a non-empty secret")
        unknown = set(self.permissions) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions: {', '.join(sorted(unknown))}")
        object.__setattr__(self, "permissions", tuple(p for p in PERMISSIONS if p in self.permissions))
        channels = tuple(self.channels) or ("*",)
        if not all(isinstance(c, str) and c for c in channels):
            raise ValueError("channel patterns must be non-empty strings")
        object.__setattr__(self, "channels", channels)

    def secrets_valid_at(self, now: float) -> tuple[str, ...]:
        if self.previous_secret and (self.previous_secret_expires_at or 0) > now:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def rotated(self, new_secret: str, grace_seconds: float, now: float) -> Role:
        return replace(
            self,
            secret=new_secret,
            previous_secret=self.secret if grace_seconds > 0 else None,
            previous_secret_expires_at=now + grace_seconds if grace_seconds > 0 else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["permissions"] = list(self.permissions)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Role:
        data = dict(data)
        data["permissions"] = tuple(data.get("permissions") or ())
        data["channels"] = tuple(data.get("channels") or ("*",))
        return _from_dict(cls, data)


@dataclass(frozen=True)
class RepublishRule:
    """Every message of the rule's FROM channel that matches is also published, projected, to ``target``."""

    expression: str
    target: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compile_rule(rule: RepublishRule) -> StreamFilter:
    """The rule's compiled expression; raises FilterError (a ValueError) for its SQL, ValueError for its
    target. Rules are checked where they are written (CLI, panel, imports); a rule stored anyway is skipped
    by the brokers, never fatal."""
    stream_filter = compile_filter(rule.expression)
    _refuse_keyword_channel(rule.expression)
    if not isinstance(rule.target, str) or not rule.target:
        raise ValueError("a republish rule needs a target channel")
    if rule.target == stream_filter.channel:
        raise ValueError(f"a rule cannot republish {rule.target!r} to itself")
    return stream_filter


def _refuse_keyword_channel(expression: str) -> None:
    """StreamSQL reads any bare word after FROM as the channel, so ``select nonsense from where`` compiles
    to a rule on a channel named "where": for a subscriber that is their business, but a rule stored with it
    republishes nothing, silently. Refuse a bare keyword there; a backticked one (`` `where` ``) is meant."""
    for token in tokens(expression):
        if token.kind == CHANNEL and not token.text.startswith("`") and token.value.upper() in KEYWORDS:
            raise FilterError(
                f"{token.value!r} at position {token.pos} is a StreamSQL keyword, not a channel name "
                f"(write `{token.value}` for a channel of that name)",
                token.pos,
            )


@dataclass(frozen=True)
class AppSettings:
    """Per-app knobs; ``None`` means "the broker-wide default from :class:`app.settings.Settings`"."""

    history_max_length: int | None = None
    history_max_age: int | None = None
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    max_subscriptions: int | None = None
    publish_rate: float | None = None  # publishes per second per connection
    max_message_size: int | None = None
    send_queue_max_bytes: int | None = None  # pending bytes per slow consumer; 0 = the broker default
    history_max_bytes: int | None = None  # bytes of messages kept per channel; 0 = only the count limits
    app_history_max_bytes: int | None = None  # bytes of the app's whole history in Redis; 0 = unlimited
    max_publish_channels: int | None = None  # channels one publish may name; 0 = unlimited
    max_channel_length: int | None = None  # UTF-8 bytes of a channel name; 0 = unlimited
    # With durability "replicated" (App.durability): replicas WAIT must see, and how long it may wait.
    min_replicas: int | None = None  # None = DEFAULT_MIN_REPLICAS
    replication_timeout: float | None = None  # seconds; None = DEFAULT_REPLICATION_TIMEOUT
    republish_rules: tuple[RepublishRule, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "republish_rules" or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{f.name} must be a non-negative number")
            if not math.isfinite(value) or value >= MAX_SETTING:
                raise ValueError(f"{f.name} is out of range (at most {MAX_SETTING - 1})")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "republish_rules"}
        data["republish_rules"] = [r.to_dict() for r in self.republish_rules]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSettings:
        data = dict(data or {})
        data["republish_rules"] = tuple(RepublishRule(**r) for r in data.get("republish_rules") or ())
        return _from_dict(cls, data)


# When a publish is acknowledged (README "Durability"): "leader" once the shard's master holds it;
# "replicated" once WAIT saw ``min_replicas`` replicas hold it within ``replication_timeout`` seconds.
DURABILITY_MODES: tuple[str, ...] = ("leader", "replicated")
DEFAULT_MIN_REPLICAS = 1
DEFAULT_REPLICATION_TIMEOUT = 1.0


def validate_durability(value: Any) -> str:
    if value not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got {value!r}")
    return value


@dataclass(frozen=True)
class App:
    key: str
    roles: dict[str, Role] = field(default_factory=dict)
    settings: AppSettings = field(default_factory=AppSettings)
    # What /metrics calls this app instead of its key ("" = its key, or "other" under metrics_apps=labelled):
    # a scraper that may see the numbers need not learn the tenants' app keys.
    metrics_label: str = ""
    # A per-app setting like those of AppSettings, and stored among them ("settings" in the store and in
    # apps.yaml); kept apart here because it is a word, and every AppSettings field is a number.
    durability: str = "leader"

    def __post_init__(self) -> None:
        validate_name("app key", self.key)
        validate_durability(self.durability)
        if self.metrics_label:
            validate_name("metrics label", self.metrics_label)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "key": self.key,
            "roles": {name: role.to_dict() for name, role in self.roles.items()},
            "settings": {**self.settings.to_dict(), "durability": self.durability},
        }
        if self.metrics_label:
            data["metrics_label"] = self.metrics_label
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> App:
        roles = {
            name: Role.from_dict({**role, "name": name}) for name, role in (data.get("roles") or {}).items()
        }
        settings = data.get("settings") or {}
        durability = settings.get("durability") if isinstance(settings, dict) else None
        return cls(
            key=data["key"],
            roles=roles,
            settings=AppSettings.from_dict(settings),
            metrics_label=data.get("metrics_label") or "",
            durability=durability or "leader",
        )


SHARD_URL_PREFIXES: tuple[str, ...] = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "redis+cluster://",
)


@dataclass(frozen=True)
class Shard:
    """A Redis node carrying channels. The URL may hold a password (``redis://:pw@host``) or use TLS."""

    name: str
    url: str

    def __post_init__(self) -> None:
        validate_name("shard name", self.name)
        if isinstance(self.url, str) and is_cluster_url(self.url):
            parse_cluster_url(self.url)  # a Redis Cluster shard: raises ValueError saying what is wrong
        elif not isinstance(self.url, str) or not self.url.startswith(SHARD_URL_PREFIXES):
            raise ValueError(
                "a shard URL starts with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
            )
        elif self.url.startswith("redis+sentinel://"):
            from .engine.sentinel_url import parse_sentinel_url  # pure; no import cycle at module load

            parse_sentinel_url(self.url)  # ValueError saying what is wrong

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConfigSnapshot:
    """Everything a broker needs from the config store, read in one go and swapped atomically."""

    version: int = 0
    apps: dict[str, App] = field(default_factory=dict)
    shards: tuple[Shard, ...] = ()
