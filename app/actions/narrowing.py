"""A role narrowed while its clients are subscribed (PROTOCOL §4: an admin's change applies to live
sessions): the subscriptions it no longer allows end, the connection stays.

Permissions are checked on every request against the role as configured now, but a subscription is not a
request: once made, it keeps receiving. So every config change the broker applies
(:meth:`app.broker.Broker.apply_config`, within a second on every process: the config watcher) runs this
for each connection of the app; a subscription whose role lost ``subscribe``, or whose channel left the
role's patterns, gets ``rtm/subscription/error`` (``permission_denied``, ``messages: []``, its position, so
the client can resume once allowed again) and is removed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..auth import channel_allowed
from ..protocol import ErrorCode
from .common import end_subscription, subscriptions_changed

if TYPE_CHECKING:
    from ..services import Services
    from ..session import Session

log = logging.getLogger(__name__)


def end_disallowed_subscriptions(session: Session, services: Services) -> int:
    """End the session's subscriptions its role no longer allows; returns how many ended."""
    role = session.role
    if role is None or not session.subscriptions:
        return 0
    may_subscribe = "subscribe" in role.permissions
    subscriptions = session.subscriptions
    ended = 0
    for subscription_id, sub in list(subscriptions.items()):
        if may_subscribe and channel_allowed(role, sub.channel):
            continue
        if subscriptions.get(subscription_id) is not sub:
            continue
        del subscriptions[subscription_id]
        sub.flush()  # what was delivered before the change goes out first
        end_subscription(session, sub, services)
        why = "subscribe" if not may_subscribe else f"channel {sub.channel}"
        sub.send_error(
            f"role {role.name} no longer allows {why}; subscription ended", ErrorCode.PERMISSION_DENIED, None
        )
        ended += 1
    if ended:
        log.info(
            "connection %s: role %s was narrowed; %d subscription(s) ended",
            session.id,
            role.name,
            ended,
            extra={"connection_id": session.id},
        )
        subscriptions_changed(session, services)
    return ended
