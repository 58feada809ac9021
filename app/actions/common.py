"""What several handlers check the same way: permissions, channel patterns, fields of the request body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import auth
from ..positions import parse_position
from ..protocol import ACTIONS, ActionError, ErrorCode

if TYPE_CHECKING:
    from ..models import Role
    from ..services import Services
    from ..session import Session
    from ..subscription import Subscription


# action → the permission it needs, worked out once rather than per request (auth.required_permission)
_PERMISSIONS: dict[str, str] = {action: auth.required_permission(action) for action in ACTIONS}


def authorize(session: Session, action: str) -> None:
    """PROTOCOL §4: every action but ``auth/*`` needs an authenticated role holding its permission (as the
    role is configured now: an admin's change applies to live sessions)."""
    role = session.role
    if role is None:
        raise ActionError(f'action "{action}" needs authentication', ErrorCode.NOT_AUTHENTICATED)
    permission = _PERMISSIONS.get(action)
    if permission is None:
        permission = auth.required_permission(action)
    if permission not in role.permissions:
        raise ActionError(f'action "{action}": permission denied', ErrorCode.PERMISSION_DENIED)


def check_channel(session: Session, action: str, channel: str) -> None:
    """The role's channel patterns must admit ``channel``."""
    role = session.role
    if role is not None and not auth.channel_allowed(role, channel):
        raise ActionError(
            f'action "{action}": permission denied on channel {channel}', ErrorCode.PERMISSION_DENIED
        )


def check_channels(role: Role | None, action: str, channels: list[str]) -> None:
    """:func:`check_channel` for each of ``channels``, the role looked up once by the caller."""
    if role is None:
        return
    allowed = auth.channel_allowed
    for channel in channels:
        if not allowed(role, channel):
            raise ActionError(
                f'action "{action}": permission denied on channel {channel}', ErrorCode.PERMISSION_DENIED
            )


def string_field(body: dict[str, Any], name: str) -> str | None:
    """A string field of the body; None when absent or empty."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ActionError(f"{name} must be a string", ErrorCode.BAD_SCHEMA)
    return value


def position_field(body: dict[str, Any]) -> str | None:
    """The body's ``position`` (PROTOCOL §7), or None; raises for one that is not ``"<ms>-<seq>"``."""
    position = body.get("position")
    if position is not None and (not isinstance(position, str) or parse_position(position) is None):
        raise ActionError(f"Invalid position: {position}", ErrorCode.INVALID_POSITION)
    return position


def end_subscription(session: Session, sub: Subscription, services: Services) -> None:
    """Detach ``sub`` (already out of ``session.subscriptions``) from the engine, and keep what it delivered
    since the last stats tick for its role's totals, however short it lived."""
    services.engine.unsubscribe(sub)
    services.stats.on_subscription_end(sub, session.role_name)


def drop_subscriptions(session: Session, services: Services) -> None:
    """End every subscription of the session (a new handshake, or the connection closed)."""
    for sub in session.take_subscriptions():
        end_subscription(session, sub, services)


def subscriptions_changed(session: Session, services: Services) -> None:
    """The session's registry entry lists its subscriptions (the panel's Subs column). The cluster only
    marks it dirty: its heartbeat writes the latest entry about once a second, so a subscribe storm costs
    one Redis write per connection per second, not one per subscribe."""
    services.cluster.connection_changed(session.id, session.info())
