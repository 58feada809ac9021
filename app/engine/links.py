"""This process's connections to one shard: a pipelined publisher, a Pub/Sub reader, a client for reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from ..config_store import connect
from ..models import Shard
from ..resp import RedisAddress
from .history import SCRIPTS
from .publisher import ShardPublisher
from .pubsub import SILENCE_PROBES, OnMessage, ShardSubscriber

if TYPE_CHECKING:
    from .core import Engine


class ShardLink:
    """One shard as this process sees it. Two links are never shared between shards, even with the same
    name: a shard that changes address gets a new link (and its channels move to it)."""

    def __init__(self, shard: Shard, engine: Engine) -> None:
        self.shard = shard
        self.name = shard.name
        address = RedisAddress(shard.url)
        probe = engine.probe_interval
        self.publisher = ShardPublisher(
            shard.name,
            address,
            SCRIPTS,
            engine.batch_max,
            on_batch=engine.stats.on_publish_batch,
            reply_timeout=probe * SILENCE_PROBES,
        )
        on_message: OnMessage = engine.route_message
        self.subscriber = ShardSubscriber(
            shard.name,
            address,
            on_message=on_message,
            on_subscribed=_bind(engine._on_channel_live, self),
            on_down=lambda: engine._on_shard_down(self),
            probe_interval=probe,
        )
        self.publisher.on_batch_end = self.subscriber.on_batch_end = engine.after_batch
        # History reads, key/value: off the hot path, so redis-py with its timeouts is fine here.
        self.client: redis.Redis = connect(shard.url, socket_timeout=max(1.0, probe * SILENCE_PROBES))

    def start(self) -> None:
        self.publisher.start()
        self.subscriber.start()

    def stop(self, timeout: float) -> None:
        self.publisher.stop(timeout)
        self.subscriber.stop()
        self.client.close()

    @property
    def available(self) -> bool:
        return self.publisher.available and self.subscriber.connected

    @property
    def known_down(self) -> bool:
        """The last attempt to reach the shard failed (as opposed to: still connecting)."""
        return self.subscriber.failing and not self.subscriber.connected

    def __repr__(self) -> str:
        return f"<ShardLink {self.name}>"


def _bind(callback: Callable[[ShardLink, bytes], None], link: ShardLink) -> Callable[[bytes], None]:
    return lambda channel: callback(link, channel)
