"""Shedding a slow client's queued pushes (PROTOCOL §7): the notices, the removals, the counters.

:func:`app.shedding.shed_queue` decides; this carries the decision out on one connection's send queue,
for :class:`app.connection.Connection` when its queue passes ``send_queue_max_bytes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent

from . import shedding
from .actions.common import end_subscription, subscriptions_changed

if TYPE_CHECKING:
    from .services import Services
    from .session import Session
    from .subscription import Subscription

log = logging.getLogger(__name__)


def shed(
    queue: list[bytes],
    owners: list[Subscription | None],
    session: Session,
    services: Services,
    frame: Callable[[bytes], bytes],
) -> int | None:
    """Take every push out of ``queue`` (``owners`` says whose each frame is), tell each subscription shed
    (``frame`` frames a notice for the connection) and remove those without ``fast_forward``. Returns the
    bytes now queued, or None when the queue held no push (nothing could be shed)."""
    plan = shedding.shed_queue(queue, owners)
    if not plan.shed:
        return None
    queue.clear()
    queue.extend(plan.kept)
    owners.clear()
    owners.extend([None] * len(plan.kept))
    queued = plan.kept_size
    stats = services.stats
    role = session.role_name
    for entry in plan.shed:
        sub = entry.subscription
        if entry.outcome == shedding.FAST_FORWARD:
            notice = sub.info_pdu(shedding.SLOW_CONSUMER_REASON, entry.position, entry.missed)
        else:
            notice = sub.out_of_sync_pdu(shedding.SLOW_CONSUMER_REASON, entry.position, entry.missed)
            _remove(session, sub, services)
        framed = frame(notice)
        queue.append(framed)
        owners.append(None)
        queued += len(framed)
        stats.on_shed(entry.outcome, role, entry.missed)
    log.warning(
        "connection %s: slow consumer, over %d bytes queued; shed %d message(s) of %d subscription(s) (%s)",
        session.id,
        services.limits.send_queue_limit(session.app),
        plan.missed,
        len(plan.shed),
        ", ".join(f"{e.subscription.subscription_id}: {e.outcome}" for e in plan.shed),
        extra={"connection_id": session.id},
    )
    return queued


def _remove(session: Session, sub: Subscription, services: Services) -> None:
    """Out of the session now; out of the engine from a greenlet of its own, since this may run inside the
    engine's fan-out over the very route the subscription is on. Until then what reaches it goes nowhere."""
    current = session.subscriptions.get(sub.subscription_id) is sub
    if current:
        del session.subscriptions[sub.subscription_id]
    sub.detach()
    gevent.spawn(_end, session, sub, services, current)


def _end(session: Session, sub: Subscription, services: Services, current: bool) -> None:
    end_subscription(session, sub, services)
    if current:
        subscriptions_changed(session, services)
