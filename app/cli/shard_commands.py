"""``shards list|add|remove``: the Redis shards carrying channels, from a shell.

Every change goes through the config store, which announces it: running brokers rebuild their ring, move
the Pub/Sub subscriptions of the channels whose shard changed and log how many moved, without a restart.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlparse, urlunparse

import redis

from ..config_store import ConfigError, ConfigStore, connect
from ..embedded_redis import find_running
from ..engine.cluster_topology import cluster_health, describe_topology
from ..engine.sentinel_url import hide_sentinel_password, is_sentinel_url
from ..models import Shard
from ..redis_cluster_url import display_url, is_cluster_url
from ..sentinel_topology import sentinel_topology
from ..settings import settings_from_args
from ..shard_reports import ShardReport, format_failover, read_shard_reports
from ..shards import DEFAULT_SHARD, effective_shards, predicted_shard_move_fraction
from .audit import record
from .errors import fail
from .store_access import add_store_arguments, open_store


def register(commands: Any) -> None:
    shards = commands.add_parser("shards", help="list, add or remove the Redis shards carrying channels")
    shard_commands = shards.add_subparsers(dest="shards_command", required=True, metavar="SUBCOMMAND")
    listing = shard_commands.add_parser("list", help="the shards, their URLs and whether they answer")
    listing.set_defaults(handler=list_shards)
    add = shard_commands.add_parser("add", help="add a shard (it must answer PING)")
    add.add_argument("name", help="shard name (letters, digits, '_', '.', '-'); channels hash on it")
    add.add_argument(
        "url",
        help="redis://[:password@]host:port/db, rediss://..., unix://..., "
        "redis+cluster://[:password@]host:port[,host:port...] or "
        "redis+sentinel://[:password@]host:port[,host:port...]/MASTER_NAME[/DB][?sentinel_password=...]",
    )
    add.add_argument(
        "--keep-config-redis",
        action="store_true",
        help=f"when the list is empty, also list the config Redis (as '{DEFAULT_SHARD}') so it keeps "
        "carrying its share of channels instead of none",
    )
    add.set_defaults(handler=add_shard)
    remove = shard_commands.add_parser("remove", help="remove a shard from the list")
    remove.add_argument("name")
    remove.set_defaults(handler=remove_shard)
    for parser in (listing, add, remove):
        add_store_arguments(parser)


# --------------------------------------------------------------------------- shards
def hide_password(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: shard URLs get printed and logged."""
    if is_cluster_url(url):
        return display_url(url)
    if is_sentinel_url(url):
        return hide_sentinel_password(url)
    parsed = urlparse(url)
    if not parsed.password:
        return url
    user = parsed.username or ""
    host = parsed.hostname or ""
    if parsed.port:
        host = f"{host}:{parsed.port}"
    return urlunparse(parsed._replace(netloc=f"{user}:***@{host}"))


def reachable(url: str, timeout: float = 2.0) -> str | None:
    """None when the Redis at ``url`` answers PING, else why not. For a Sentinel shard: its master, as
    the Sentinels name it."""
    if is_cluster_url(url):
        health = cluster_health(url, timeout)
        return None if health["ok"] else health.get("error", "unhealthy")
    if is_sentinel_url(url):
        topology = sentinel_topology(url, timeout)
        if topology["master_url"] is None:
            return f"no Sentinel names a master: {topology['error']}"
        url = topology["master_url"]
    client = connect(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()


def config_url(args: argparse.Namespace) -> str | None:
    """The config Redis URL the brokers use, when it is stable: REDIS_URL, or a running broker's embedded
    Redis. (An embedded Redis started just for this command gets a new port every time.)"""
    settings = settings_from_args(args)
    return settings.redis_url or find_running(settings.state_path)


def list_shards(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        shards = store.shards()
        url = config_url(args) or _store_url(store)
        reports = read_shard_reports(store.redis)
    note = "" if shards else "the config Redis: no shard list is set"
    rows = [(s.name, s.url, note) for s in effective_shards(shards, url)]
    width = max(len(name) for name, _, _ in rows)
    for name, shard_url, note in rows:
        kind, state = shard_state(shard_url)
        suffix = f"  ({note})" if note else ""
        brokers = brokers_view(kind, reports.get(name))
        print(f"{name:<{width}}  {kind:<8}  {hide_password(shard_url)}  {state}  {brokers}{suffix}")
    return 0


def shard_state(url: str) -> tuple[str, str]:
    """The shard's kind and what it says now: reachable or not, and its topology (asked of the shard)."""
    if is_cluster_url(url):
        health = cluster_health(url)
        return "cluster", ("reachable, " if health["ok"] else "UNREACHABLE, ") + describe_topology(health)
    problem = reachable(url)
    state = "reachable" if problem is None else f"UNREACHABLE ({problem})"
    if not is_sentinel_url(url):
        return "single", state
    topology = sentinel_topology(url)
    replicas = ", ".join(topology["replicas"]) or "none"
    return "sentinel", f"{state}  [sentinel: master {topology['master'] or 'unknown'}, replicas {replicas}]"


def brokers_view(kind: str, report: ShardReport | None) -> str:
    """What the live brokers report of the shard: how many have it connected and, for a shard that can
    fail over, the latest master move any of them followed (only brokers see those)."""
    if report is None:
        return "[brokers: none reports it]"
    text = f"[brokers: {report.connected} of {report.brokers} connected"
    if kind != "single":
        text += f", last failover {format_failover(report.last_failover)}"
        if report.failovers:
            text += f" ({report.failovers} followed)"
    if len(report.masters) > 1:
        text += f", masters named: {', '.join(report.masters)}"
    return text + "]"


def add_shard(args: argparse.Namespace) -> int:
    try:
        shard = Shard(args.name, args.url)
    except ValueError as exc:
        return fail(str(exc))
    problem = reachable(shard.url)
    if problem is not None:
        return fail(f"{hide_password(shard.url)} does not answer PING: {problem}")
    with open_store(args) as store:
        current = store.shards()
        url = config_url(args)
        if any(s.name == shard.name for s in current):
            return fail(f"a shard named {shard.name!r} is already listed")
        for other in current:
            if other.url == shard.url:
                return fail(f"{hide_password(shard.url)} is already listed as shard {other.name!r}")
        proposed = [*current, shard]
        notes = []
        if not current:
            if args.keep_config_redis:
                if url is None:
                    return fail(
                        "the config Redis is an embedded one started for this command only; "
                        "set REDIS_URL (or run a broker) to list it as a shard"
                    )
                if shard.url != url:
                    proposed = [Shard(DEFAULT_SHARD, url), shard]
                    notes.append(f"the config Redis stays a shard, listed as {DEFAULT_SHARD!r}")
            elif shard.url != url:
                notes.append(
                    f"the shard list was empty, so the config Redis carried every channel (as shard "
                    f"{DEFAULT_SHARD!r}); it is not in the list now, so it carries no channel any more. "
                    "To keep it, remove this shard and add it again with --keep-config-redis."
                )
        fraction = predicted_shard_move_fraction(current, proposed, url or _store_url(store))
        try:
            store.set_shards(proposed, expected=current)
        except ConfigError as exc:
            return fail(str(exc))
        record(store, "shards.add", target=shard.name, shards=_listing(proposed), moved=f"{fraction:.1%}")
    print(f"added shard {shard.name} ({hide_password(shard.url)}); shards now: {_names(proposed)}")
    _print_fraction(fraction)
    for note in notes:
        print(f"note: {note}")
    return 0


def remove_shard(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        current = store.shards()
        if not any(s.name == args.name for s in current):
            listed = _names(current) if current else "none (the config Redis alone)"
            return fail(f"no shard named {args.name!r}; listed: {listed}")
        proposed = [s for s in current if s.name != args.name]
        url = config_url(args) or _store_url(store)
        fraction = predicted_shard_move_fraction(current, proposed, url)
        try:
            store.set_shards(proposed, expected=current)
        except ConfigError as exc:
            return fail(str(exc))
        record(store, "shards.remove", target=args.name, shards=_listing(proposed), moved=f"{fraction:.1%}")
    print(f"removed shard {args.name}; shards now: {_names(proposed) if proposed else '(none)'}")
    _print_fraction(fraction)
    if not proposed:
        print(f"note: the list is empty: the config Redis carries every channel again (as {DEFAULT_SHARD!r})")
    return 0


# --------------------------------------------------------------------------- an imported list
def unreachable_shards(shards: tuple[Shard, ...]) -> str | None:
    """Why an imported shard list cannot be applied (a shard that does not answer), or None. Asked before
    anything of the file is written, as ``shards add`` asks before adding."""
    problems = [f"{s.name} ({hide_password(s.url)}): {p}" for s in shards if (p := reachable(s.url))]
    return "shard(s) not answering PING: " + "; ".join(problems) if problems else None


def import_shard_list(args: argparse.Namespace, store: ConfigStore, proposed: tuple[Shard, ...]) -> int:
    """Replace the stored shard list by a file's (``import-config``); prints what moves. 0, or the exit
    code of a refusal (the list changed meanwhile)."""
    current = list(store.shards())
    fraction = predicted_shard_move_fraction(current, list(proposed), config_url(args) or _store_url(store))
    if args.check:
        print(f"it would set the shard list to: {_names(proposed) or '(config Redis)'}")
        _print_fraction(fraction)
        return 0
    try:
        store.set_shards(proposed, expected=current)
    except ConfigError as exc:
        return fail(str(exc))
    record(store, "shards.import", shards=_listing(list(proposed)), moved=f"{fraction:.1%}")
    print(f"shard list now: {_names(proposed) or '(config Redis)'}")
    _print_fraction(fraction)
    return 0


def _names(shards: list[Shard] | tuple[Shard, ...]) -> str:
    return ", ".join(s.name for s in shards)


def _listing(shards: list[Shard]) -> str:
    """The shard list for the audit log: names and URLs, passwords masked."""
    return ", ".join(f"{s.name}={hide_password(s.url)}" for s in shards) or "(config Redis)"


def _print_fraction(fraction: float) -> None:
    print(f"channels that move to another Redis node: {fraction:.1%}")
    if fraction:
        print("(running brokers move their subscriptions live; history and stored values of moved channels")
        print(" stay on their old node, so a resume from an older position reports expired_position)")


def _store_url(store: ConfigStore) -> str:
    kwargs = store.redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
