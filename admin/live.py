"""Live views: the dashboard (with its JSON feed) and the connection list of every broker process.

Connections come from the cluster registry each broker process keeps in Redis; disconnecting one goes over
the cluster's control channel to whichever process holds it. Rates come from the stats documents the
brokers write about once a second (``app.cluster.node_stats``), summed up by :mod:`admin.live_stats`.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from app import cluster

from .context import audit, now, store
from .forms import EmptyForm
from .live_stats import summarize

bp = Blueprint("live", __name__)
log = logging.getLogger(__name__)


def node_stats(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """The stats documents of the live broker processes (empty until one has reported)."""
    try:
        return cluster.node_stats(client)
    except (ValueError, TypeError) as exc:  # a malformed document must not take the dashboard down
        log.warning("unreadable broker stats: %s", exc)
        return {}


@bp.route("/")
def dashboard() -> Any:
    return render_template("live/dashboard.html")


@bp.route("/live/stats.json")
def stats() -> Any:
    client = store().redis
    summary = summarize(node_stats(client), cluster.registered_connections(client), store().list_apps())
    summary["ts"] = now()
    summary["live_nodes"] = len(cluster.live_nodes(client))
    return jsonify(summary)


@bp.route("/connections/")
def connections() -> Any:
    app_key = request.args.get("app") or None
    found = cluster.registered_connections(store().redis, app_key)
    found.sort(key=lambda c: (str(c.get("app")), -float(c.get("connected_at") or 0)))
    nodes = cluster.live_nodes(store().redis)
    return render_template(
        "live/connections.html",
        connections=found,
        nodes=nodes,
        app_filter=app_key or "",
        form=EmptyForm(formdata=None),
    )


@bp.route("/connections/<connection_id>/close", methods=["POST"])
def disconnect(connection_id: str) -> Any:
    form = EmptyForm()
    app_key = request.args.get("app") or None
    if form.validate_on_submit():
        owner = next(
            (c for c in cluster.registered_connections(store().redis) if c.get("id") == connection_id), None
        )
        if owner and cluster.request_close(store().redis, connection_id):
            audit(
                "connection.close",
                app=str(owner.get("app") or ""),
                target=connection_id,
                role=owner.get("role"),
                node=owner.get("node"),
            )
            flash(f"Asked {owner.get('node')} to close connection {connection_id}.", "success")
        else:
            flash(f"Connection {connection_id} is already gone.", "info")
    return redirect(url_for("live.connections", app=app_key))
