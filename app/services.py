"""What an action handler may use, handed to it explicitly: built once per broker process.

A handler gets the session it acts for, the request, this :class:`Services` object and the :class:`Client`
it answers; it never reaches into the broker. Unit tests build the same object around the in-memory engine
(:mod:`app.engine.memory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .engine.history import HistoryPolicy
from .models import ADMIN_APP, DEFAULT_MIN_REPLICAS, DEFAULT_REPLICATION_TIMEOUT, App, ConfigSnapshot

if TYPE_CHECKING:
    from .engine.interface import EngineAPI
    from .engine.republish import Republisher
    from .limits import Limits
    from .settings import Settings
    from .stats import Stats


class Client(Protocol):
    """The client a handler answers: its replies and pushes, and closing it (the transport
    :class:`app.connection.Connection`; a recording sink in unit tests). Also a subscription's Sink."""

    @property
    def closing(self) -> bool: ...

    # "json" or "cbor" (PROTOCOL §10): which subscriptions it gets, how its pushes are encoded.
    encoding: str

    def send_payload(self, payload: bytes) -> None: ...

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None: ...

    def close(self, code: int = ..., reason: str = "") -> None: ...


class ClusterAPI(Protocol):
    """What handlers need of the cluster (:class:`app.cluster.Cluster`): connections in a scope (an app key,
    or None for all), closing one wherever it lives, and announcing a connection's new registry entry."""

    def connection_ids(self, app_key: str | None) -> list[str]: ...

    def close_connection(self, connection_id: str, app_key: str | None) -> bool: ...

    def connection_changed(self, connection_id: str, info: dict[str, Any] | None) -> None: ...

    def authenticated_connections(self, app_key: str, cluster_wide: bool = True) -> int: ...


class ConfigView:
    """The broker's current configuration: the config store's last snapshot, the process settings and the
    node name. The broker swaps the snapshot on each change; sessions and handlers read through this view,
    so what an admin changes applies at once."""

    __slots__ = ("_policies", "node", "settings", "snapshot")

    def __init__(self, settings: Settings, snapshot: ConfigSnapshot | None = None, node: str = "") -> None:
        self.settings = settings
        self.snapshot = snapshot or ConfigSnapshot()
        self.node = node or settings.node
        self._policies: dict[str, HistoryPolicy] = {}

    @property
    def apps(self) -> dict[str, App]:
        return self.snapshot.apps

    def update(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        self._policies = {}

    def history_policy(self, app_key: str) -> HistoryPolicy:
        """The app's history retention: its own settings, else the broker-wide defaults (cached per
        config version: it goes into every publish)."""
        policy = self._policies.get(app_key)
        if policy is None:
            app = self.snapshot.apps.get(app_key)
            length = app.settings.history_max_length if app is not None else None
            age = app.settings.history_max_age if app is not None else None
            max_bytes = app.settings.history_max_bytes if app is not None else None
            app_bytes = app.settings.app_history_max_bytes if app is not None else None
            app_bytes = self.settings.app_history_max_bytes if app_bytes is None else int(app_bytes)
            # The app's budget is enforced by each shard on what it holds: an even share keeps the sum
            # within the budget (channels spread evenly over the hash ring).
            shares = max(len(self.snapshot.shards), 1)
            replicas, timeout = 0, DEFAULT_REPLICATION_TIMEOUT
            if app is not None and app.durability == "replicated":
                replicas = app.settings.min_replicas
                replicas = DEFAULT_MIN_REPLICAS if replicas is None else int(replicas)
                if app.settings.replication_timeout is not None:
                    timeout = float(app.settings.replication_timeout)
            policy = self._policies[app_key] = HistoryPolicy(
                self.settings.history_max_length if length is None else int(length),
                self.settings.history_max_age if age is None else int(age),
                self.settings.history_max_bytes if max_bytes is None else int(max_bytes),
                -(-app_bytes // shares),
                app_key,
                min_replicas=replicas,
                replication_timeout_ms=int(timeout * 1000),
            )
        return policy


def admin_scope(app_key: str) -> str | None:
    """The app whose connections an admin role may see: its own, or all for the ``_admin`` app."""
    return None if app_key == ADMIN_APP else app_key


@dataclass(frozen=True, eq=False)
class Services:
    engine: EngineAPI
    republisher: Republisher
    limits: Limits
    stats: Stats
    cluster: ClusterAPI
    config: ConfigView
