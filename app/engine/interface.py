"""The engine interface: what the broker and the action handlers may ask of an engine.

The Redis engine (:class:`app.engine.core.Engine`) is one implementation; the in-memory engine
(:mod:`app.engine.memory`) is another, for unit tests of the action handlers. Nothing above the engine
imports either class's internals: it is handed an object of this shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..models import Shard
    from ..subscription import Subscription
    from .errors import EngineError
    from .history import HistoryPolicy

# Gets the position Redis gave the message once it holds it, or the EngineError that kept it out.
PublishCallback = Callable[["str | EngineError"], None]


@dataclass(frozen=True)
class ShardStatus:
    """One shard as this process sees it, for readiness, /stats and /metrics."""

    name: str
    available: bool  # publisher and Pub/Sub reader both connected
    queued: int  # publishes handed to the shard and not answered yet
    kind: str = "single"  # "single" (one node) or "sentinel" (a master found through Sentinel)
    master: str | None = None  # host:port of the node taking writes, as this process last heard
    replicas: tuple[str, ...] = ()  # host:port of its replicas that are up (Sentinel shards)
    failovers: int = 0  # master moves this process followed
    last_failover: float | None = None  # Unix time of the last one


class EngineAPI(Protocol):
    # ---------------------------------------------------------------- messages
    def publish(
        self,
        key: str,
        message: bytes,
        policy: HistoryPolicy,
        callback: PublishCallback,
        deliver: bool = True,
    ) -> None:
        """Append ``message`` (JSON bytes) to channel ``key`` and deliver it live unless ``deliver`` is
        False; ``callback`` runs once the message is stored, or with the error that kept it out."""

    def publish_and_wait(self, key: str, message: bytes, policy: HistoryPolicy, timeout: float = 5.0) -> str:
        """Publish and block this greenlet until stored; the position, or raises EngineError."""

    def subscribe(self, sub: Subscription, replay: bool) -> str:
        """Attach ``sub`` and wait until its channel is live; returns the channel's tail position. With
        ``replay``, live messages are held for ``sub`` until :meth:`replay` runs. Raises EngineError."""

    def replay(self, sub: Subscription, position: str, policy: HistoryPolicy) -> None:
        """Send ``sub`` what follows ``position``, then switch it to live: no gap, no duplicate."""

    def replay_recent(
        self, sub: Subscription, count: int | None, age: int | None, policy: HistoryPolicy
    ) -> None:
        """``history: {count, age}`` (PROTOCOL §5): send ``sub`` the retained messages among the channel's
        last ``count`` and not older than ``age`` seconds (None: no such bound), then switch it to live as
        :meth:`replay` does. ``sub`` was subscribed with ``replay``."""

    def unsubscribe(self, sub: Subscription) -> None: ...

    def read(self, key: str, position: str | None = None) -> tuple[bytes | None, str | None]:
        """(message JSON, its position) at ``position``, or the newest; (None, None) when there is none."""

    def delete(self, key: str, app_key: str | None = None) -> None:
        """Remove channel ``key``'s history; ``app_key`` names the app whose byte accounting (history
        budgets) must lose the channel's bytes."""

    # ---------------------------------------------------------------- lifecycle
    def configure(self, shards: Iterable[Shard], default_url: str) -> int:
        """Use ``shards`` (the config Redis alone when empty); returns how many local channels moved."""

    def wait_ready(self, timeout: float) -> bool: ...

    def drain(self, timeout: float) -> bool:
        """Wait until every accepted publish was answered by its shard; False on timeout."""

    def stop(self, timeout: float = 5.0) -> None: ...

    def shard_statuses(self) -> list[ShardStatus]: ...

    def ping_shards(self, timeout: float) -> dict[str, str | None]:
        """Ask every shard for a PING, concurrently: shard name → None when it answered in time, or
        what went wrong."""
