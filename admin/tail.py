"""Live tail: a channel's messages in the browser as they are published, optionally through StreamSQL.

The stream is Server-Sent Events from a redis-py Pub/Sub subscription to the channel's key on the shard
that carries it (the same ring the brokers use). Under gevent each tail is one greenlet and one Redis
connection; it ends after ``ADMIN_TAIL_MAX_SECONDS`` or ``ADMIN_TAIL_MAX_MESSAGES``, and as soon as the
browser goes away (the next write fails — a keepalive comment every ``ADMIN_TAIL_KEEPALIVE`` seconds makes
sure there is one; in practice the second write after a disconnect fails), closing the subscription.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis
from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from wtforms.fields.choices import SelectChoice

from app.channels import channel_key, split_published
from app.models import ConfigSnapshot
from app.shards import ShardRing
from app.stream_sql import StreamFilter, compile_filter

from .context import panel, store
from .forms import TailForm

bp = Blueprint("tail", __name__, url_prefix="/tail")
log = logging.getLogger(__name__)


def shard_url_for(snapshot: ConfigSnapshot, key: str, default_url: str) -> tuple[str, str]:
    """(shard name, URL) carrying ``key``: the config Redis itself when no shard list is set."""
    if not snapshot.shards:
        return "(config Redis)", default_url
    name = ShardRing([s.name for s in snapshot.shards]).node_for(key)
    return name, next(s.url for s in snapshot.shards if s.name == name)


def _form(snapshot: ConfigSnapshot) -> TailForm:
    form = TailForm(formdata=request.args if request.args else None)
    form.app.choices = [SelectChoice(key, key) for key in sorted(snapshot.apps)]
    return form


def _target(form: TailForm) -> tuple[str, StreamFilter | None]:
    """The channel to follow: a filter's FROM channel wins over the channel field (as in rtm/subscribe)."""
    compiled = compile_filter(form.filter.data) if form.filter.data else None
    channel = compiled.channel if compiled is not None and compiled.channel else form.channel.data
    return channel, compiled


@bp.route("/")
def index() -> Any:
    snapshot = store().snapshot()
    form = _form(snapshot)
    stream_url = None
    status = 200
    if request.args:
        if form.validate():
            channel, _ = _target(form)
            stream_url = url_for(
                "tail.stream", app=form.app.data, channel=channel, filter=form.filter.data or None
            )
        else:
            status = 400
    return render_template("tail/index.html", form=form, stream_url=stream_url), status


@bp.route("/stream")
def stream() -> Any:
    snapshot = store().snapshot()
    form = _form(snapshot)
    if not request.args or not form.validate():
        errors = {name: messages for name, messages in form.errors.items()}
        return jsonify(error="invalid tail request", fields=errors), 400
    channel, compiled = _target(form)
    key = channel_key(form.app.data, channel)
    shard, url = shard_url_for(snapshot, key, panel().redis_url)
    config = current_app.config
    events = tail_events(
        url,
        key,
        compiled,
        max_seconds=config["ADMIN_TAIL_MAX_SECONDS"],
        max_messages=config["ADMIN_TAIL_MAX_MESSAGES"],
        keepalive=config["ADMIN_TAIL_KEEPALIVE"],
        ready={"app": form.app.data, "channel": channel, "shard": shard},
    )
    # No X-Accel-Buffering from a proxy, no caching: each event must reach the browser as it happens.
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(events, mimetype="text/event-stream", headers=headers)


def sse(event: str, data: Any) -> bytes:
    # One JSON line per event: JSON never holds a raw newline, so it cannot break the SSE framing.
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def tail_events(
    url: str,
    key: str,
    stream_filter: StreamFilter | None,
    *,
    max_seconds: float,
    max_messages: int,
    keepalive: float,
    ready: dict[str, Any],
) -> Iterator[bytes]:
    """SSE events: ``ready``, then one ``message`` {position, message} per delivered message, ``end``
    {reason} when a bound is reached (or ``failure`` if the shard cannot be reached)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=keepalive + 10.0)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            pubsub.subscribe(key)
        except redis.RedisError as exc:
            yield sse("failure", {"error": f"cannot subscribe on shard {ready.get('shard')}: {exc}"})
            return
        yield b"retry: 5000\n" + sse("ready", ready)
        deadline = time.monotonic() + max_seconds
        sent = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield sse("end", {"reason": f"time limit ({max_seconds:g} s) reached"})
                return
            try:
                message = pubsub.get_message(timeout=min(keepalive, remaining))
            except redis.RedisError as exc:
                yield sse("failure", {"error": f"lost the shard: {exc}"})
                return
            if message is None or message.get("type") != "message":
                yield b": keepalive\n\n"  # also how a closed browser tab is noticed
                continue
            position, raw = split_published(message["data"])
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                payload = raw.decode(errors="replace")
            for item in stream_filter.apply(payload) if stream_filter else [payload]:
                yield sse("message", {"position": position, "message": item})
                sent += 1
                if sent >= max_messages:
                    yield sse("end", {"reason": f"message limit ({max_messages}) reached"})
                    return
    finally:
        try:
            pubsub.close()
            client.close()
        except Exception:  # closing after the shard died: nothing left to release
            log.debug("closing a tail subscription failed", exc_info=True)
