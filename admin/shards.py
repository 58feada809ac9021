"""Shards: the Redis nodes carrying channels, with their health; edit, preview the move, save.

Saving is one ``config_store.set_shards``: brokers re-route within a second. A channel whose shard changes
starts afresh on the new node (its history stays behind), so the preview says how many would move first.
The share and move estimates come from :mod:`app.shards` (cached, computed off the event loop). Each
shard's kind and topology are asked of the shard itself; its failovers only the brokers see (their links
follow the master moves), so those come from the brokers' reports (:mod:`app.shard_reports`).
Shard URLs may hold a password: pages show it masked, and a masked URL sent back means "unchanged".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from app.config_store import ConfigError
from app.engine.cluster_topology import cluster_shard_health
from app.engine.sentinel_url import is_sentinel_url
from app.models import Shard
from app.redis_cluster_url import is_cluster_url
from app.sentinel_topology import sentinel_topology
from app.shard_reports import ShardReport, format_failover, read_shard_reports
from app.shards import DEFAULT_SHARD, channel_shares, off_the_event_loop, predicted_shard_move_fraction

from .context import audit, panel, store
from .forms import ShardListForm

bp = Blueprint("shards", __name__, url_prefix="/shards")

MASK = "********"


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if is_sentinel_url(url) and "sentinel_password=" in parts.query:  # the Sentinels' own secret
        query = "&".join(
            f"sentinel_password={MASK}" if pair.startswith("sentinel_password=") else pair
            for pair in parts.query.split("&")
        )
        parts = parts._replace(query=query)
        url = urlunsplit(parts)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def unmask_url(url: str, name: str, existing: dict[str, Shard]) -> str:
    """A URL the page showed masked comes back masked: restore the stored password if nothing else
    changed; anything else is taken as typed."""
    old = existing.get(name)
    if old is not None and MASK in url and mask_url(old.url) == url:
        return old.url
    return url


def shard_kind(url: str) -> str:
    """The kind a shard URL names, as the brokers' links report it: single, sentinel or cluster."""
    if is_cluster_url(url):
        return "cluster"
    return "sentinel" if is_sentinel_url(url) else "single"


def failover_summary(report: ShardReport | None) -> dict[str, Any]:
    """What the page says of a shard's failovers: the latest any live broker followed, and how many."""
    if report is None:
        return {"reported": False}
    return {
        "reported": True,
        "last_failover": format_failover(report.last_failover),
        "failovers": report.failovers,
        "brokers": report.brokers,
        "connected": report.connected,
        "masters": report.masters,
    }


def shard_health(url: str, timeout: float) -> dict[str, Any]:
    """PING, then INFO's memory and clients; never raises (an unreachable shard is a result). A Sentinel
    shard is its master as the Sentinels name it, with its topology (``master``, ``replicas``)."""
    if is_cluster_url(url):
        return cluster_shard_health(url, timeout)
    topology: dict[str, Any] = {}
    if is_sentinel_url(url):
        topology = sentinel_topology(url, timeout)
        if topology["master_url"] is None:
            return {"ok": False, "error": f"no Sentinel names a master: {topology['error']}"}
        url = topology["master_url"]
        topology = {"master": topology["master"], "replicas": topology["replicas"]}
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        started = time.perf_counter()
        client.ping()
        latency_ms = (time.perf_counter() - started) * 1000
        info = client.info()
        return {
            "ok": True,
            "latency_ms": latency_ms,
            "used_memory": info.get("used_memory"),
            "maxmemory": info.get("maxmemory") or None,
            "connected_clients": info.get("connected_clients"),
            "version": info.get("redis_version"),
            "uptime": info.get("uptime_in_seconds"),
            **topology,
        }
    except (redis.RedisError, OSError, ValueError, TypeError) as exc:  # TypeError: an unknown URL option
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    finally:
        client.close()


def health_of(urls: Sequence[str]) -> list[dict[str, Any]]:
    """Check every node at once, so one dead shard costs one timeout, not one per shard."""
    if not urls:
        return []
    timeout = current_app.config["ADMIN_SHARD_TIMEOUT"]
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        return list(pool.map(lambda url: shard_health(url, timeout), urls))


def _rows(shards: Sequence[Shard]) -> list[dict[str, str]]:
    return [{"name": s.name, "url": mask_url(s.url)} for s in shards]


def _render(form: ShardListForm, status: int = 200, preview: dict[str, Any] | None = None) -> Any:
    current = list(store().shards())
    urls = [s.url for s in current] or [panel().redis_url]
    health = health_of(urls)
    reports = read_shard_reports(store().redis)
    if current:
        shares = off_the_event_loop(channel_shares, current)
        listed = [
            {
                "name": s.name,
                "url": mask_url(s.url),
                "kind": shard_kind(s.url),
                "health": h,
                "share": shares[s.name],
                "failover": failover_summary(reports.get(s.name)),
            }
            for s, h in zip(current, health, strict=True)
        ]
    else:
        listed = [
            {
                "name": "(config Redis)",
                "url": mask_url(urls[0]),
                "kind": "single",
                "health": health[0],
                "share": 1.0,
                "failover": failover_summary(reports.get(DEFAULT_SHARD)),
            }
        ]
    return render_template(
        "shards/index.html", shards=listed, explicit=bool(current), form=form, preview=preview
    ), status


@bp.route("/")
def index() -> Any:
    form = ShardListForm(formdata=None, data={"shards": _rows(store().shards())})
    return _render(form)


@bp.route("/", methods=["POST"])
def submit() -> Any:
    form = ShardListForm()
    if not form.validate_on_submit():
        return _render(form, 400)
    existing = {s.name: s for s in store().shards()}
    proposed: list[Shard] = []
    valid = True
    names: set[str] = set()
    for entry in form.shards.entries:
        name, url = entry.form.name.data.strip(), entry.form.url.data.strip()
        if name in names:
            entry.form.name.errors.append("Shard names must be unique.")
            valid = False
            continue
        names.add(name)
        try:
            url = unmask_url(url, name, existing)
            shard = Shard(name=name, url=url)
            if not is_cluster_url(url) and not is_sentinel_url(url):  # (Shard() checked those whole)
                redis.connection.parse_url(url)  # a port that is not a number, an unknown option, ...
            proposed.append(shard)
        except (ValueError, TypeError) as exc:
            entry.form.url.errors.append(str(exc))
            valid = False
    if not valid:
        return _render(form, 400)
    health = health_of([s.url for s in proposed])
    for entry, result in zip(form.shards.entries, health, strict=True):
        if not result["ok"]:
            entry.form.url.errors.append(f"Does not answer PING: {result['error']}")
            valid = False
    if not valid:
        return _render(form, 400)
    current = list(existing.values())
    # Ring statistics are CPU-bound (cached per shard list): computed in a thread, not on the event loop.
    fraction = off_the_event_loop(predicted_shard_move_fraction, current, proposed, panel().redis_url)
    if request.form.get("action") != "save":
        shares = off_the_event_loop(channel_shares, proposed)
        preview = {
            "fraction": fraction,
            "rows": [
                {"name": s.name, "url": mask_url(s.url), "health": h, "share": shares.get(s.name, 0.0)}
                for s, h in zip(proposed, health, strict=True)
            ],
            "unchanged": [s.to_dict() for s in current] == [s.to_dict() for s in proposed],
        }
        return _render(form, 200, preview)
    try:
        store().set_shards(proposed, expected=current)
    except ConfigError as exc:
        flash(str(exc), "error")
        return _render(form, 400)
    audit(
        "shards.save",
        shards=", ".join(f"{s.name}={mask_url(s.url)}" for s in proposed) or "(config Redis)",
        moved=f"{fraction:.1%}",
    )
    flash(f"Shard list saved; about {fraction:.0%} of channels move to another node.", "success")
    return redirect(url_for("shards.index"))
