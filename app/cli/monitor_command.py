"""``monitor``: a live table of what every broker node is doing, until interrupted.

The monitor reads the latest stats document of every live node from the config Redis
(:func:`app.cluster.node_stats`, complete at once) or, with ``--source channel``, listens to ``/stats`` of
app ``_stats`` on a broker like ``cobra monitor`` does (no Redis access needed). Either way it rides out a
restart of what it reads: the Redis by retrying, the broker by reconnecting (both said on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from ..cluster import NODE_TTL, node_stats
from ..config_store import ConfigStore
from ..models import STATS_APP
from ..stats_publisher import STATS_CHANNEL
from .client_commands import Subscription, add_client_arguments, check_endpoint, role_secret
from .errors import fail
from .store_access import open_store

Documents = dict[str, dict[str, Any]]


def register(commands: Any) -> None:
    monitor = commands.add_parser("monitor", help="live table of every broker node, per role and per channel")
    add_client_arguments(monitor, STATS_APP, "stats")
    monitor.add_argument(
        "--source",
        choices=("redis", "channel"),
        default="redis",
        help="read the nodes' latest documents from the config Redis (default), or listen to /stats on "
        "--endpoint like `cobra monitor`",
    )
    monitor.add_argument("--once", action="store_true", help="print one snapshot and exit (for scripts)")
    monitor.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    monitor.add_argument("--channels", type=int, default=20, help="busiest channels shown (default 20)")
    monitor.set_defaults(handler=monitor_command)


def monitor_command(args: argparse.Namespace) -> int:
    if args.source == "channel":
        check_endpoint(args.endpoint)
        subscription = Subscription(args, *role_secret(args), STATS_CHANNEL)
        subscription.open()
        try:
            return _loop(args, ChannelReader(subscription).read)
        finally:
            subscription.close()
    with open_store(args) as store:
        return _loop(args, RedisReader(store, retry=not args.once).read)


def _loop(args: argparse.Namespace, read: Callable[[float], Documents]) -> int:
    live = not args.once and sys.stdout.isatty()
    while True:
        documents = read(args.interval)
        if args.once:
            if not documents:
                return fail(f"no broker node reported statistics in the last {NODE_TTL:.0f} s")
            print(render(documents, args.channels))
            return 0
        screen = render(documents, args.channels) if documents else "waiting for statistics…"
        print(("\x1b[H\x1b[2J" if live else "\n") + screen, flush=True)
        time.sleep(args.interval)


class ChannelReader:
    """The latest document of each node, from the pushes of ``/stats``."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.latest: Documents = {}

    def read(self, seconds: float) -> Documents:
        deadline = time.monotonic() + max(seconds, 1.2)  # every node publishes once a second
        while time.monotonic() < deadline:
            push = self.subscription.next_push(max(0.05, deadline - time.monotonic()))
            if push is None:
                break
            if push.get("action") == "rtm/subscription/data":
                for document in push["body"]["messages"]:
                    if isinstance(document, dict) and "node" in document:
                        self.latest[str(document["node"])] = document
        now = time.time()
        self.latest = {n: d for n, d in self.latest.items() if now - _number(d.get("ts", now)) <= NODE_TTL}
        return self.latest


class RedisReader:
    """The latest document of each node, from the config Redis; while that Redis is down, the last ones."""

    def __init__(self, store: ConfigStore, retry: bool = True) -> None:
        self.store = store
        self.retry = retry
        self.latest: Documents = {}
        self.failing = False

    def read(self, seconds: float) -> Documents:
        try:
            self.latest = node_stats(self.store.redis)
        except redis.RedisError as exc:
            if not self.retry:
                raise
            if not self.failing:
                print(f"the config Redis does not answer ({exc}); retrying…", file=sys.stderr, flush=True)
            self.failing = True
            return self.latest
        if self.failing:
            print("the config Redis answers again", file=sys.stderr, flush=True)
        self.failing = False
        return self.latest


# --------------------------------------------------------------------------- rendering
def render(documents: Mapping[str, Mapping[str, Any]], max_channels: int = 20) -> str:
    nodes = sorted(documents.items())
    out = [f"cobra broker: {len(nodes)} node(s) at {time.strftime('%Y-%m-%d %H:%M:%S')}", ""]

    node_rows = []
    for name, document in nodes:
        data = _map(document.get("data"))
        cobra, system = _map(data.get("cobra")), _map(data.get("system"))
        node_rows.append(
            [
                name,
                _number(system.get("connections")),
                _number(system.get("subscriptions")),
                _sum(cobra.get("published_count_per_second")),
                _sum(cobra.get("subscribed_count_per_second")),
                _size(_number(system.get("mem_bytes"))),
                str(system.get("uptime", "")),
            ]
        )
    if len(node_rows) > 1:
        node_rows.append(["(all)", *(sum(row[i] for row in node_rows) for i in range(1, 5)), "", ""])
    out += table(["node", "connections", "subscriptions", "pub/s", "deliv/s", "memory", "uptime"], node_rows)

    per_role: dict[str, Counter[str]] = {}
    for _, document in nodes:
        for metric, values in _map(_map(document.get("data")).get("cobra")).items():
            for role, value in _map(values).items():
                per_role.setdefault(role, Counter())[metric] += _number(value)
    role_columns = [
        ("published", "published_count"),
        ("pub/s", "published_count_per_second"),
        ("delivered", "subscribed_count"),
        ("deliv/s", "subscribed_count_per_second"),
        ("reads", "reads_count"),
        ("writes", "writes_count"),
        ("subscriptions", "subscriptions"),
    ]
    role_rows = [
        [role, *(metrics[key] for _, key in role_columns)] for role, metrics in sorted(per_role.items())
    ]
    out += ["", *table(["role", *(title for title, _ in role_columns)], role_rows)]

    per_channel: dict[str, list[float]] = {}
    for _, document in nodes:
        channel_data = _map(_map(document.get("data")).get("channel_data"))
        for index, metric in enumerate(("published_count_per_second", "subscribed_count_per_second")):
            for channel, value in _map(channel_data.get(metric)).items():
                per_channel.setdefault(channel, [0.0, 0.0])[index] += _number(value)
    busiest = sorted(per_channel.items(), key=lambda item: (-sum(item[1]), item[0]))[:max_channels]
    channel_rows = [[channel, published, delivered] for channel, (published, delivered) in busiest]
    out += ["", *table([f"channel (busiest {max_channels})", "pub/s", "deliv/s"], channel_rows)]
    return "\n".join(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        lines.append(
            "  ".join([first, *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))])
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if not rows:
        lines.append("(none)")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _sum(values: Any) -> float:
    return sum(_number(v) for v in _map(values).values())
