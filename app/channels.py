"""How an app's channel is named in Redis, and how a published message travels on Pub/Sub. No I/O.

A channel ``<appkey>::<channel>`` is one Redis stream (its history) and one Pub/Sub channel of the same
name (its live feed); the publish script sends ``b"<position> <message json>"`` on the latter. Everything
that names a channel or reads a live message (the engine, the stats publisher, the admin tail) uses these
two functions, so the format is written down once.
"""

from __future__ import annotations


def channel_key(app_key: str, channel: str) -> str:
    """The Redis stream and Pub/Sub channel of an app's channel."""
    return f"{app_key}::{channel}"


def split_published(payload: bytes) -> tuple[str, bytes]:
    """A Pub/Sub payload as the publish script sends it: ``b"<position> <message json>"``."""
    position, _, message = payload.partition(b" ")
    return position.decode(), message
