"""``rtm/publish``, ``rtm/subscribe``, ``rtm/unsubscribe`` (PROTOCOL §5, §6, §7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from .. import codec, protocol
from ..channels import channel_key
from ..engine import EngineError
from ..protocol import ActionError, ErrorCode, Request
from ..stream_sql import FilterError, compile_filter
from ..subscription import CborSubscription, Subscription
from ..windows import MAX_PERIOD, WINDOW_BUDGET_MAX, WindowBudget
from .common import (
    check_channel,
    check_channels,
    end_subscription,
    position_field,
    string_field,
    subscriptions_changed,
)

if TYPE_CHECKING:
    from ..services import Client, Services
    from ..session import Session
    from ..stats import Stats

MAX_BATCH_SIZE = 10_000


# --------------------------------------------------------------------------- publish
def publish(session: Session, request: Request, services: Services, client: Client) -> bytes | None:
    """Acknowledged once the engine holds the message on every channel (the reply is sent then)."""
    body = request.body
    value = body.get("message")
    if value is None:
        raise ActionError("publish: empty message", ErrorCode.EMPTY_MESSAGE)
    channels = _publish_channels(body)
    # The app and role as configured now, looked up once for every check below (nothing here yields, so
    # the configuration cannot change in between).
    app = session.app
    limits = services.limits
    limits.check_publish_channels(app, channels)  # before anything costs per channel
    check_channels(session.role, request.action, channels)
    limits.check_publish(session.publish_bucket, app)
    message = orjson.dumps(value)
    limits.check_message_size(app, len(message))
    outcome = _PublishOutcome(client, services.stats, request, channels)
    store_publish(services, session.app_key, session.role_name, channels, value, message, outcome.on_result)
    return None


def store_publish(
    services: Services,
    app_key: str,
    role_name: str | None,
    channels: list[str],
    value: Any,
    message: bytes,
    on_result: Callable[[str | EngineError], None],
) -> None:
    """The publish path shared by WebSocket and HTTP publishes (PROTOCOL §5, §13), once permissions and
    limits are checked: ``message`` (the JSON of ``value``) to every channel, through the app's republish
    rules, ``on_result`` called once per channel with its position or the error that kept it out."""
    config = services.config
    policy = config.history_policy(app_key)
    republisher = services.republisher
    rules = republisher.rules_for(config.apps.get(app_key))  # None for an app without republish rules
    engine = services.engine
    for channel in channels:
        callback = on_result
        if rules is not None:
            callback = republisher.after_publish(rules, channel, value, policy, callback)
        engine.publish(channel_key(app_key, channel), message, policy, callback)
    services.stats.on_publish(app_key, role_name, channels, len(message))


def _publish_channels(body: dict[str, Any]) -> list[str]:
    channels = body.get("channels")
    if channels is not None:  # C++ sends only "channels"; when both are present it wins
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise ActionError("publish: channels must be a list of non-empty strings", ErrorCode.BAD_SCHEMA)
        channels = list(dict.fromkeys(channels))
    else:
        channel = string_field(body, "channel")
        channels = [channel] if channel else []
    if not channels:
        raise ActionError("publish: no channel or channels field", ErrorCode.MISSING_CHANNEL)
    return channels


class _PublishOutcome:
    """Collects the per-channel results of one publish and replies once all are in."""

    __slots__ = ("channels", "client", "error", "first_position", "pending", "request", "stats")

    def __init__(self, client: Client, stats: Stats, request: Request, channels: list[str]) -> None:
        self.client = client
        self.stats = stats
        self.request = request
        self.channels = channels
        self.pending = len(channels)
        self.first_position: str | None = None
        self.error: EngineError | None = None

    def on_result(self, result: str | EngineError) -> None:
        if isinstance(result, EngineError):
            self.error = self.error or result
        elif self.first_position is None:
            self.first_position = result
        self.pending -= 1
        if self.pending:
            return
        request = self.request
        if self.error is not None:
            self.stats.errors += 1
            reply = protocol.error(request.action, request.id, self.error.message, self.error.code)
        else:
            reply = protocol.publish_ok(request.id, self.channels, self.first_position)
        self.client.send_payload(reply)


# --------------------------------------------------------------------------- subscribe / unsubscribe
def subscribe(session: Session, request: Request, services: Services, client: Client) -> bytes | None:
    body = request.body
    settings = services.config.settings
    filter_text = body.get("filter")
    stream_filter = None
    channel = string_field(body, "channel")
    # The id defaults to the channel the client named (the C++ SDK keys its callbacks by it), even when a
    # filter's FROM clause decides which channel is actually followed.
    subscription_id = string_field(body, "subscription_id") or channel
    if filter_text is not None and filter_text != "":
        if not isinstance(filter_text, str):
            raise ActionError("filter must be a string", ErrorCode.INVALID_FILTER)
        try:
            stream_filter = compile_filter(
                filter_text, max_length=settings.filter_max_length, max_depth=settings.filter_max_depth
            )
        except FilterError as exc:
            raise ActionError(
                f"Invalid SQL expression {filter_text}", ErrorCode.INVALID_FILTER, {"reason": str(exc)}
            ) from None
        channel = stream_filter.channel  # the FROM channel decides what is subscribed
    subscription_id = subscription_id or channel
    channel = channel or subscription_id
    if channel is None or subscription_id is None:
        raise ActionError("missing channel and subscription_id", ErrorCode.MISSING_CHANNEL)
    position = None if body.get("position") == "$" else position_field(body)
    history = history_field(body)
    if position is not None:
        history = None  # PROTOCOL §5: with both, position wins
    batch_size = body.get("batch_size", 1)
    if batch_size is None:
        batch_size = 1
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ActionError(f"Invalid batch_size: {batch_size}", ErrorCode.INVALID_BATCH_SIZE)
    period = period_field(body)
    check_channel(session, request.action, channel)
    services.limits.check_channel_name(session.app, channel)

    engine = services.engine
    subscriptions = session.subscriptions
    existing = subscriptions.get(subscription_id)
    if stream_filter is not None:
        services.limits.check_filter_bytes(subscriptions.values(), stream_filter.text, existing)
    if existing is not None and body.get("force") is not True:
        raise ActionError(
            f"subscription_id {subscription_id} is already in use", ErrorCode.ALREADY_SUBSCRIBED
        )
    # A forced replacement stays attached until the new one is live (see _replace), so it does not count.
    services.limits.check_subscriptions(session.app, len(subscriptions) - (existing is not None))

    # A CBOR client's subscription pushes CBOR (PROTOCOL §10); the engine cannot tell the two apart.
    kind = CborSubscription if client.encoding == codec.SUBPROTOCOL else Subscription
    sub = kind(
        client,
        subscription_id,
        channel,
        channel_key(session.app_key, channel),
        stream_filter,
        batch_size,
        settings.batch_flush_interval,
        period,
        window_budget(session, services) if period is not None else None,
        max_groups=settings.max_groups,
        # PROTOCOL §7: fast-forwarded rather than removed when the client falls behind (the Satori SDKs'
        # SIMPLE mode and cobras send true)
        fast_forward=body.get("fast_forward") is True,
    )
    subscriptions[subscription_id] = sub
    # PROTOCOL §12: a view aggregates live messages only, whatever position or history asked for.
    live_only = sub.shared_window is not None and (position is not None or history is not None)
    if live_only:
        position = history = None
    replay = position is not None or history is not None
    if existing is not None and not replay:
        # Until the swap, the old subscription delivers; what reaches the new one meanwhile is held, then
        # dropped at the swap (the old one delivered what matched it), so nothing is lost or doubled.
        sub.begin_sync()
    try:
        tail = engine.subscribe(sub, replay=replay)
    except EngineError:
        if subscriptions.get(subscription_id) is sub:
            if existing is not None:
                subscriptions[subscription_id] = existing  # a failed replacement leaves the old one running
            else:
                del subscriptions[subscription_id]
        elif existing is not None:
            end_subscription(session, existing, services)
        raise
    if existing is not None:
        _replace(session, existing, sub, services, live=not replay)
    if client.closing or subscriptions.get(subscription_id) is not sub:
        # While we waited for Redis the connection went away (nobody to answer), or the subscription was
        # ended under us: its role was narrowed (app.actions.narrowing), or a later force replaced it. A
        # request always gets its reply, so the last two are refused.
        end_subscription(session, sub, services)
        if client.closing:
            return None
        role = session.role
        if role is not None and "subscribe" not in role.permissions:
            raise ActionError(f'action "{request.action}": permission denied', ErrorCode.PERMISSION_DENIED)
        check_channel(session, request.action, channel)
        raise ActionError(
            f"subscription_id {subscription_id} was replaced before it was live", ErrorCode.ALREADY_SUBSCRIBED
        )
    sub.position = tail
    subscriptions_changed(session, services)
    client.send_payload(
        protocol.ok(
            request.action,
            request.id,
            {
                "subscription_id": subscription_id,
                "position": tail,
                "channel": channel,
                "node": services.config.node,
                **({"aggregates_live_only": True} if live_only else {}),
            },
        )
    )
    if position is not None:
        engine.replay(sub, position, services.config.history_policy(session.app_key))
    elif history is not None:
        engine.replay_recent(sub, *history, services.config.history_policy(session.app_key))
    return None


def _replace(session: Session, old: Subscription, new: Subscription, services: Services, live: bool) -> None:
    """``force: true`` (PROTOCOL §5): swap ``new`` in for ``old`` without yielding, both attached to the
    engine at that moment, so every message is delivered by exactly one of them. The push counter goes on
    from the old one's: the subscription is replaced in place, its push ids stay one sequence."""
    old.flush()  # a partial batch of the old filter goes out under the old counter
    old.flush_window()  # and so does a partial window: the new subscription's window starts now
    new.counter = old.counter
    new.position = old.position
    if live:
        new.syncing = None  # held while the old one still delivered: drop, it covered them
    end_subscription(session, old, services)


def period_field(body: dict[str, Any]) -> int | None:
    """The body's ``period`` (PROTOCOL §5, §11): whole seconds, 1 to 3600 (booleans are not numbers here);
    None when absent or null; anything else is ``invalid_period``."""
    period = body.get("period")
    if period is None:
        return None
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= MAX_PERIOD:
        raise ActionError(f"Invalid period: {period}", ErrorCode.INVALID_PERIOD)
    return period


def window_budget(session: Session, services: Services) -> WindowBudget:
    """The bytes the session's time windows may buffer together: half its send-queue limit, so the early
    push at the limit (app.windows) still fits in the queue next to what is already queued, and at most
    1 MiB. One per session, kept by the session's windowed subscriptions; it follows the app's limit on
    each subscribe."""
    limit = min(services.limits.send_queue_limit(session.app) // 2, WINDOW_BUDGET_MAX)
    for sub in session.subscriptions.values():
        budget = sub.window_budget
        if budget is not None:
            budget.limit = limit
            return budget
    return WindowBudget(limit)


def history_field(body: dict[str, Any]) -> tuple[int | None, int | None] | None:
    """The body's ``history: {count, age}`` (PROTOCOL §5) as (count, age), either None when not given;
    None when absent. Both are non-negative integers; anything else is ``invalid_history``."""
    history = body.get("history")
    if history is None:
        return None
    if not isinstance(history, dict):
        raise ActionError(f"Invalid history: {history}", ErrorCode.INVALID_HISTORY)
    bounds = []
    for name in ("count", "age"):
        value = history.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ActionError(
                f"Invalid history: {name} must be a non-negative integer", ErrorCode.INVALID_HISTORY
            )
        bounds.append(value)
    return bounds[0], bounds[1]


def unsubscribe(session: Session, request: Request, services: Services, client: Client) -> bytes:
    subscription_id = request.body.get("subscription_id")
    subscriptions = session.subscriptions
    sub = subscriptions.pop(subscription_id, None) if isinstance(subscription_id, str) else None
    if sub is None:
        raise ActionError(f"Invalid subscriptionId: {subscription_id}", ErrorCode.NOT_SUBSCRIBED)
    sub.flush()
    end_subscription(session, sub, services)
    subscriptions_changed(session, services)
    return protocol.ok(
        request.action, request.id, {"subscription_id": subscription_id, "position": sub.position}
    )
