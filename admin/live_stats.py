"""The dashboard's numbers: the brokers' stats documents summed up per app and per channel. No I/O.

Each broker process writes its stats document (PROTOCOL §8: ``{"node", "data": {"cobra", "channel_data",
"system"}}``, plus ``data.apps`` with per-app totals and rates; see ``app.cluster``) about once a second.
:func:`summarize` reads whatever the documents hold and never fails on a missing or oddly shaped part — a
partial dashboard beats an error page while brokers of different versions share a cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

TOP_CHANNELS = 25


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sum(section: Mapping[str, Any], name: str) -> float:
    return sum(_number(v) for v in _map(section.get(name)).values())


def channel_rates(channel_data: Mapping[str, Any], metric: str) -> dict[str, float]:
    """``{channel: rate}`` for ``<metric>_count_per_second``, from ``{metric: {channel: n}}`` (PROTOCOL §8's
    leaves) or from ``{channel: {metric: n}}``."""
    name = f"{metric}_count_per_second"
    if isinstance(channel_data.get(name), Mapping):
        return {str(k): _number(v) for k, v in channel_data[name].items()}
    return {
        str(channel): _number(values.get(name))
        for channel, values in channel_data.items()
        if isinstance(values, Mapping) and name in values
    }


def split_channel(key: str) -> tuple[str, str]:
    """``appkey::channel`` → (appkey, channel); a bare channel name has no known app."""
    app, sep, channel = key.partition("::")
    return (app, channel) if sep else ("", key)


def app_rates(
    data: Mapping[str, Any], published: Mapping[str, float], delivered: Mapping[str, float]
) -> dict:
    """``{app: [publishes/s, deliveries/s]}``: from the document's per-app section, which covers every
    channel; else summed from ``channel_data``, which may list only the busiest channels."""
    apps = _map(data.get("apps"))
    if apps:
        return {
            str(key): [
                _number(_map(values).get("published_count_per_second")),
                _number(_map(values).get("delivered_count_per_second")),
            ]
            for key, values in apps.items()
        }
    rates: dict[str, list[float]] = {}
    for index, per_channel in enumerate((published, delivered)):
        for channel, rate in per_channel.items():
            rates.setdefault(split_channel(channel)[0], [0.0, 0.0])[index] += rate
    return rates


def node_summary(name: str, document: Mapping[str, Any]) -> dict[str, Any]:
    data = _map(document.get("data"))
    cobra, system = _map(data.get("cobra")), _map(data.get("system"))
    channels = _map(data.get("channel_data"))
    published = channel_rates(channels, "published")
    delivered = channel_rates(channels, "subscribed")
    return {
        "node": str(document.get("node") or name),
        "connections": int(_number(system.get("connections"))),
        "publishes_per_second": _sum(cobra, "published_count_per_second") or sum(published.values()),
        "deliveries_per_second": _sum(cobra, "subscribed_count_per_second") or sum(delivered.values()),
        "mem_bytes": _number(system.get("mem_bytes")) or None,
        "uptime": str(system.get("uptime") or ""),
        "published": published,
        "delivered": delivered,
        "apps": app_rates(data, published, delivered),
    }


def summarize(
    documents: Mapping[str, Mapping[str, Any]],
    connections: Iterable[Mapping[str, Any]],
    app_keys: Iterable[str] = (),
) -> dict:
    """Totals, per node, per app and the busiest channels. Connection counts come from the cluster's
    registry (exact, per app); rates from the stats documents (per channel, hence per app). Every app of
    ``app_keys`` (the configured apps) gets a row, with zeros when quiet: an app missing from the
    dashboard reads as a deleted one."""
    nodes = [node_summary(name, doc) for name, doc in sorted(documents.items()) if isinstance(doc, Mapping)]
    per_app_connections = Counter(str(c.get("app") or "") for c in connections)
    per_app: dict[str, list[float]] = {}
    channel_totals: dict[str, list[float]] = {}
    for node in nodes:
        for index, key in enumerate(("published", "delivered")):
            for channel, rate in node[key].items():
                channel_totals.setdefault(channel, [0.0, 0.0])[index] += rate
        for app, (published, delivered) in node["apps"].items():
            rates = per_app.setdefault(app, [0.0, 0.0])
            rates[0] += published
            rates[1] += delivered
    keys = sorted((set(per_app_connections) | set(per_app) | {str(k) for k in app_keys}) - {""})
    busiest = sorted(channel_totals.items(), key=lambda item: -(item[1][0] + item[1][1]))[:TOP_CHANNELS]
    return {
        "has_stats": bool(nodes),
        "totals": {
            "nodes": len(nodes),
            "connections": sum(per_app_connections.values()),
            "publishes_per_second": sum(n["publishes_per_second"] for n in nodes),
            "deliveries_per_second": sum(n["deliveries_per_second"] for n in nodes),
        },
        "nodes": [{k: v for k, v in n.items() if k not in ("published", "delivered", "apps")} for n in nodes],
        "apps": [
            {
                "app": key,
                "connections": per_app_connections.get(key, 0),
                "publishes_per_second": per_app.get(key, [0.0, 0.0])[0],
                "deliveries_per_second": per_app.get(key, [0.0, 0.0])[1],
            }
            for key in keys
        ],
        "channels": [
            {
                "app": split_channel(channel)[0],
                "channel": split_channel(channel)[1],
                "publishes_per_second": published,
                "deliveries_per_second": delivered,
            }
            for channel, (published, delivered) in busiest
            if published or delivered
        ],
    }
