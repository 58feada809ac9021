"""Following one Redis Pub/Sub channel for the life of the process (config changes, cluster control)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import redis

log = logging.getLogger(__name__)


def listen_forever(
    client: redis.Redis,
    channel: str,
    on_message: Callable[[bytes], None],
    what: str,
    on_subscribed: Callable[[], None] | None = None,
    retry_delay: float = 1.0,
) -> None:
    """Hand the data of every message on ``channel`` to ``on_message``; never returns (run it in a greenlet).

    A lost connection is retried after ``retry_delay`` seconds; ``on_subscribed`` runs after each
    (re)subscription, to catch up on what was missed meanwhile. A bug in a callback is logged and the
    listener starts over, so one bad message cannot stop the process from listening. Nothing is swallowed
    silently: the first failure of an outage is a warning, its retries (every ``retry_delay``) are debug
    lines, so a Redis down for an hour does not write thousands of warnings."""
    failing = False
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            if failing:
                log.info("%s: subscribed to %s again", what, channel)
                failing = False
            if on_subscribed is not None:
                on_subscribed()
            while True:
                message = pubsub.get_message(timeout=30.0)
                if message is not None:
                    on_message(message["data"])
        except redis.RedisError as exc:
            level = logging.DEBUG if failing else logging.WARNING
            log.log(
                level,
                "%s: Redis failed (%s: %s); retrying every %.1f s",
                what,
                type(exc).__name__,
                exc,
                retry_delay,
            )
            failing = True
            gevent.sleep(retry_delay)
        except Exception:
            log.exception("%s failed; restarting it", what)
            gevent.sleep(1.0)
        finally:
            try:
                pubsub.close()
            except Exception as exc:  # the connection is usually broken already; the failure above said why
                log.debug("%s: closing the subscription failed (%s: %s)", what, type(exc).__name__, exc)
