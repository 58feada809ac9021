"""All configuration knobs, in one place.

Every knob has a documented default, an environment variable and a command-line flag with the same name
(``max_message_size`` ↔ ``COBRA_MAX_MESSAGE_SIZE`` ↔ ``--max-message-size``). Nothing else in the code base
reads ``os.environ``: the settings object is built once at start-up and passed down.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _knob(default: Any, help: str, env: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "env": env})


@dataclass(frozen=True)
class Settings:
    # --- network ---
    host: str = _knob("127.0.0.1", "interface the broker listens on")
    port: int = _knob(8765, "TCP port of the broker (WebSocket, HTTP and the admin panel)")
    node_name: str = _knob("", "name of this broker process in replies and stats (default: host:port:pid)")

    # --- Redis ---
    redis_url: str = _knob(
        "", "config-store Redis URL; unset = start an embedded redis-server", env="REDIS_URL"
    )
    state_dir: str = _knob(
        str(PROJECT_ROOT / ".state"), "folder for the embedded Redis data and runtime files"
    )
    apps_config: str = _knob("", "an existing Cobra apps.yaml loaded into the config store at start-up")
    config_poll_interval: float = _knob(
        1.0, "seconds between config-version checks (a safety net under the change notifications)"
    )
    redis_wait_timeout: float = _knob(
        30.0, "seconds a starting broker keeps retrying an unreachable config Redis before it gives up"
    )

    # --- WebSocket edge (PROTOCOL §1) ---
    max_message_size: int = _knob(
        1 << 20, "largest incoming message in bytes, after decompression; bigger closes with 1009"
    )
    deflate: bool = _knob(True, "negotiate permessage-deflate (RFC 7692) when a client offers it")
    deflate_min_size: int = _knob(
        1024, "outgoing messages at least this big are compressed when deflate was negotiated"
    )
    ping_interval: float = _knob(30.0, "seconds of client silence before the server sends a ping")
    ping_timeout: float = _knob(30.0, "seconds after that ping before a silent client is closed")

    # --- before authentication (anonymous sockets: SECURITY.md) ---
    http_head_timeout: float = _knob(
        10.0, "seconds a client has to send a whole request line and headers (one deadline, not per read)"
    )
    http_keepalive: float = _knob(
        5.0, "seconds an idle HTTP keep-alive connection waits for its next request (gunicorn: its keepalive)"
    )
    http_max_header_bytes: int = _knob(
        16384,
        "largest header block of a request in bytes (the request line has its own 8 KiB cap); over it, 431",
    )
    http_max_headers: int = _knob(64, "most header lines one request may carry")
    auth_timeout: float = _knob(
        10.0, "seconds an upgraded WebSocket has to complete auth/authenticate before it is closed (1008)"
    )
    preauth_max_message_size: int = _knob(
        16384, "largest incoming message (fragments included) before authentication; bigger closes with 1009"
    )
    preauth_max_per_ip: int = _knob(
        64, "sockets one IP address may hold on one process before authenticating (0 = unlimited)"
    )
    preauth_max_total: int = _knob(
        4096, "sockets one process holds before authentication, all addresses together (0 = unlimited)"
    )

    # --- per-connection limits ---
    send_queue_max_bytes: int = _knob(
        8 << 20,
        "bytes queued for one slow client before its queued pushes are shed, and it is disconnected if that"
        " is not enough (bounds memory per client)",
    )
    max_subscriptions: int = _knob(1000, "subscriptions one connection may hold")
    auth_max_attempts: int = _knob(3, "failed authentications before the connection is closed (1008)")
    batch_flush_interval: float = _knob(
        0.1, "seconds after which a partial subscription batch (batch_size > 1) is flushed"
    )

    filter_max_length: int = _knob(2048, "longest StreamSQL filter accepted, in characters")
    filter_max_depth: int = _knob(32, "deepest nesting of a StreamSQL WHERE clause accepted")
    max_groups: int = _knob(1000, "groups one aggregated view keeps per window; more are dropped_groups")
    filter_max_bytes_per_connection: int = _knob(
        65536, "characters of distinct StreamSQL filters one connection may hold at once (0 = unlimited)"
    )
    max_publish_channels: int = _knob(
        100, "most channels one publish may name (apps may override; 0 = unlimited)"
    )
    max_channel_length: int = _knob(
        1024, "longest channel name accepted, in UTF-8 bytes (apps may override; 0 = unlimited)"
    )
    max_connections_per_ip: int = _knob(
        0, "connections one IP address may hold on one broker process (0 = unlimited); apps may override"
    )
    publish_rate: float = _knob(
        0.0, "publishes per second one connection may make, bursts of 2 s allowed (0 = unlimited)"
    )

    # --- engine ---
    publish_batch_max: int = _knob(2000, "most commands written to Redis in one pipelined batch")
    history_max_length: int = _knob(
        1000, "default messages kept per channel (apps may override; 0 = no replay, pure Pub/Sub)"
    )
    history_max_age: int = _knob(3600, "default seconds a channel's history (and an idle channel) lives")
    history_max_bytes: int = _knob(
        4 << 20, "default bytes of messages kept per channel (apps may override; 0 = only the count limits)"
    )
    app_history_max_bytes: int = _knob(
        256 << 20,
        "default bytes of history one app keeps in Redis, split evenly between shards (apps may override; "
        "0 = unlimited)",
    )
    shard_probe_interval: float = _knob(
        5.0,
        "seconds between liveness probes of each shard connection; one silent for 2.5 probes is rebuilt",
    )

    gc_threshold: int = _knob(
        50_000, "allocations between young-generation garbage collections (0 = Python's default of 700)"
    )

    # --- admin panel ---
    admin_session_lifetime: float = _knob(3600.0, "seconds an idle admin session lasts")
    admin_session_max_age: int = _knob(12 * 3600, "seconds an admin session lasts at most, however active")
    admin_secure_cookies: str = _knob(
        "auto", "Secure flag of the admin session cookie: auto (when served over https), true or false"
    )
    admin_trusted_proxies: int = _knob(
        0,
        "proxies in front of the admin panel that append to X-Forwarded-For; 0 = use the peer address "
        "(login throttling and the audit log)",
    )

    # --- metrics ---
    metrics_token: str = _knob(
        "", "bearer token GET /metrics requires (Authorization: Bearer <token>); empty = /metrics is open"
    )
    metrics_apps: str = _knob(
        "label",
        "per-app series on /metrics: label (each app's metrics label, else its key), labelled (apps "
        "without a label summed as app=other: no app key shown) or off",
    )

    # --- logging ---
    log_level: str = _knob("INFO", "logging level")
    log_json: bool = _knob(False, "log one JSON object per line instead of text")
    access_log: bool = _knob(
        False, "log one line per HTTP request and per WebSocket connection (malformed requests included)"
    )

    @property
    def node(self) -> str:
        return self.node_name or f"{socket.gethostname()}:{self.port}:{os.getpid()}"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    # ------------------------------------------------------------------ construction
    @classmethod
    def env_name(cls, name: str) -> str:
        env = _field_map()[name].metadata.get("env")
        return env or f"COBRA_{name.upper()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then explicit overrides (e.g. parsed CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(cls.env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _field_map() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(Settings)}


def _coerce(f: dataclasses.Field, raw: str) -> Any:
    kind = type(f.default)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{Settings.env_name(f.name)}: expected a boolean, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{Settings.env_name(f.name)}: expected {kind.__name__}, got {raw!r}") from None


def add_settings_arguments(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    """Add ``--knob-name`` flags for the given settings (all of them by default)."""
    for f in fields(Settings):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (env {Settings.env_name(f.name)}, default {f.default!r})"
        if type(f.default) is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), help=help_text)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    names = _field_map()
    return Settings.from_env(environ, **{k: v for k, v in vars(args).items() if k in names})


def settings_table() -> str:
    """The configuration table of the README, in Markdown."""
    rows = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for flag, env, default, text in describe_settings():
        rows.append(f"| `{flag}` | `{env}` | `{default}` | {text} |")
    return "\n".join(rows)


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(flag, env var, default, help) rows, for the README's configuration table."""
    return [
        (
            "--" + f.name.replace("_", "-"),
            Settings.env_name(f.name),
            repr(f.default) if f.name != "state_dir" else "./.state",
            f.metadata["help"],
        )
        for f in fields(Settings)
    ]
