"""Live tail: a channel's messages in the browser as they are published, optionally through StreamSQL.

The stream is Server-Sent Events from a subscription of this process's engine, opened through the broker's
:class:`app.live_tail.LiveTail` handed to the panel (so the tail follows the channel wherever the engine
routes it, and goes on through shard outages like any subscriber). Under gevent each tail is one greenlet;
it ends after ``ADMIN_TAIL_MAX_SECONDS`` or ``ADMIN_TAIL_MAX_MESSAGES``, and as soon as the browser goes
away (the next write fails — a keepalive comment every ``ADMIN_TAIL_KEEPALIVE`` seconds makes sure there is
one; in practice the second write after a disconnect fails), closing the subscription.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from wtforms.fields.choices import SelectChoice

from app.live_tail import LiveTail, TailEnd, TailMessage, TailNotice, TailUnavailable, TailWindow
from app.models import ConfigSnapshot
from app.stream_sql import StreamFilter, compile_filter

from .context import panel, store
from .forms import TailForm

bp = Blueprint("tail", __name__, url_prefix="/tail")


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
    live_tail = panel().live_tail
    channel, compiled = _target(form)
    config = current_app.config
    if live_tail is None:  # a panel built without a broker (a bare WSGI app): said as an unreachable shard is
        events: Iterator[bytes] = iter(
            [sse("failure", {"error": "the live tail needs a broker in this process"})]
        )
    else:
        events = tail_events(
            live_tail,
            form.app.data,
            channel,
            compiled,
            max_seconds=config["ADMIN_TAIL_MAX_SECONDS"],
            max_messages=config["ADMIN_TAIL_MAX_MESSAGES"],
            keepalive=config["ADMIN_TAIL_KEEPALIVE"],
        )
    # No X-Accel-Buffering from a proxy, no caching: each event must reach the browser as it happens.
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(events, mimetype="text/event-stream", headers=headers)


def sse(event: str, data: Any) -> bytes:
    # One JSON line per event: JSON never holds a raw newline, so it cannot break the SSE framing.
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def tail_events(
    live_tail: LiveTail,
    app_key: str,
    channel: str,
    stream_filter: StreamFilter | None,
    *,
    max_seconds: float,
    max_messages: int,
    keepalive: float,
) -> Iterator[bytes]:
    """SSE events: ``ready`` {app, channel, shard}, then one ``message`` {position, message} per delivered
    message — for an aggregated view, one ``window`` {position, end, period, rows, dropped_groups} per
    window instead (the rows replace the previous window's) —, ``notice`` {error, code} when the engine
    interrupts the feed (it resumes by itself), ``end``
    {reason} when a bound is reached (or ``failure`` if the shard cannot be reached)."""
    try:
        tail = live_tail.open(app_key, channel, stream_filter)
    except TailUnavailable as exc:
        yield sse("failure", {"error": f"cannot subscribe on shard {exc.shard}: {exc.message}"})
        return
    with tail:  # closed however the generator ends: a bound, or the browser gone (GeneratorExit)
        yield b"retry: 5000\n" + sse("ready", {"app": app_key, "channel": channel, "shard": tail.shard})
        deadline = time.monotonic() + max_seconds
        sent = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield sse("end", {"reason": f"time limit ({max_seconds:g} s) reached"})
                return
            received = tail.receive(timeout=min(keepalive, remaining))
            if not received:
                yield b": keepalive\n\n"  # also how a closed browser tab is noticed
                continue
            for event in received:
                if isinstance(event, TailEnd):
                    yield sse("end", {"reason": event.reason})
                    return
                if isinstance(event, TailNotice):
                    yield sse("notice", {"error": event.error, "code": event.code})
                    continue
                if isinstance(event, TailWindow):
                    window = {
                        "position": event.position,
                        "end": event.end,
                        "period": event.period,
                        "rows": event.rows,
                        "dropped_groups": event.dropped_groups,
                    }
                    yield sse("window", window)
                else:
                    assert isinstance(event, TailMessage)
                    yield sse("message", {"position": event.position, "message": event.message})
                sent += 1
                if sent >= max_messages:
                    yield sse("end", {"reason": f"message limit ({max_messages}) reached"})
                    return
