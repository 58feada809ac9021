"""One client's session: who it is, what it authenticated as, what it follows, how fast it may publish.

Pure state, no I/O and no greenlets: the transport (:mod:`app.connection`) carries the frames, the action
handlers (:mod:`app.actions`) change the session. A session sees its app and role through the config view
it is handed, never a copy, so a permission an admin changes applies to live sessions at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .models import App, Role
    from .subscription import Subscription


class AppsView(Protocol):
    """Where a session looks its app up: the broker's current config (swapped whole on each change)."""

    @property
    def apps(self) -> Mapping[str, App]: ...


class TokenBucket:
    """A rate limit: ``rate`` takes per second, bursts of ``rate * burst_seconds`` allowed.

    The rate is passed at each take rather than fixed, because an admin may change an app's rate while its
    connections live. Costs two floats per connection; starts full, so a fresh connection may burst."""

    __slots__ = ("_clock", "tokens", "updated_at")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.tokens = 0.0
        self.updated_at: float | None = None  # None until the first take

    def take(self, rate: float, burst_seconds: float) -> bool:
        """Take one token; False (and nothing taken) when the bucket is empty."""
        now = self._clock()
        capacity = rate * burst_seconds
        if self.updated_at is None:
            self.tokens = capacity
        else:
            self.tokens = min(capacity, self.tokens + (now - self.updated_at) * rate)
        self.updated_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Session:
    __slots__ = (
        "_config",
        "app_key",
        "auth_failures",
        "connected_at",
        "id",
        "nonce",
        "pending_role",
        "publish_bucket",
        "remote_addr",
        "role_name",
        "subscriptions",
    )

    def __init__(
        self,
        connection_id: str,
        app_key: str,
        remote_addr: str,
        config: AppsView,
        connected_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = connection_id
        self.app_key = app_key
        self.remote_addr = remote_addr
        self.connected_at = time.time() if connected_at is None else connected_at
        self._config = config
        self.role_name: str | None = None  # set once authenticated
        self.pending_role: str | None = None  # role named in the handshake
        self.nonce: str | None = None  # of the last handshake; answers one authenticate only
        self.auth_failures = 0
        self.subscriptions: dict[str, Subscription] = {}  # subscription id → subscription
        self.publish_bucket = TokenBucket(clock)

    # ------------------------------------------------------------------ permissions view
    @property
    def app(self) -> App | None:
        """The app as currently configured (None once an admin deleted it)."""
        return self._config.apps.get(self.app_key)

    @property
    def role(self) -> Role | None:
        """The role as currently configured (permissions changed by an admin apply at once); None before
        authentication, or once the role was revoked."""
        if self.role_name is None:
            return None
        app = self._config.apps.get(self.app_key)
        return app.roles.get(self.role_name) if app is not None else None

    # ------------------------------------------------------------------ auth state (PROTOCOL §3)
    def begin_handshake(self, role: str, nonce: str) -> None:
        """A handshake names the role to authenticate as; the session is unauthenticated until then."""
        self.role_name = None
        self.pending_role = role
        self.nonce = nonce

    def take_nonce(self) -> tuple[str | None, str | None]:
        """(nonce, role named in the handshake) for one authentication attempt; the nonce is spent, so a
        captured hash cannot be replayed."""
        nonce, self.nonce = self.nonce, None
        return nonce, self.pending_role

    def authenticated(self, role_name: str) -> None:
        self.role_name = role_name
        self.auth_failures = 0

    def take_subscriptions(self) -> list[Subscription]:
        """Every subscription, removed from the session (the caller detaches them from the engine)."""
        subs = list(self.subscriptions.values())
        self.subscriptions.clear()
        return subs

    # ------------------------------------------------------------------ the cluster registry
    def info(self) -> dict[str, Any]:
        """This connection as the cluster registry lists it (admin panel, ``admin/get_connections``)."""
        return {
            "id": self.id,
            "app": self.app_key,
            "role": self.role_name,
            "remote_addr": self.remote_addr,
            "connected_at": self.connected_at,
            "subscriptions": len(self.subscriptions),
        }
