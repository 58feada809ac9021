"""What each action of PROTOCOL §3 to §5 does: validation, permission checks, the engine call, the reply.

A handler returns the reply (bytes), or None when the reply is sent later (publishes are acknowledged only
once Redis holds them), and raises :class:`ActionError` for an ``<action>/error`` reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from . import __version__, auth, protocol
from .channels import channel_key
from .engine import EngineError
from .positions import parse_position
from .protocol import ActionError, ErrorCode, FatalError, Request
from .stream_sql import FilterError, compile_filter
from .subscription import Subscription

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger(__name__)

Handler = Callable[["Connection", Request], bytes | None]
MAX_BATCH_SIZE = 10_000


def dispatch(conn: Connection, payload: bytes) -> None:
    """Handle one incoming message; every outcome is a reply, a fatal close, or a logged bug."""
    request = protocol.parse_request(payload)
    if isinstance(request, FatalError):
        conn.broker.stats.errors += 1
        conn.send_fatal(request.reason)
        return
    action = request.action
    try:
        if request.body_error is not None:
            raise ActionError(request.body_error, ErrorCode.BAD_SCHEMA)
        if not action.startswith("auth/"):
            _authorize(conn, action)
        reply = HANDLERS[action](conn, request)
    except ActionError as exc:
        conn.broker.stats.errors += 1
        reply = protocol.action_error(action, request.id, exc)
    except EngineError as exc:
        conn.broker.stats.errors += 1
        reply = protocol.error(action, request.id, exc.message, exc.code)
    except Exception:
        # A bug must cost one request, not the connection or the process.
        log.exception("connection %s: %s failed", conn.id, action)
        reply = protocol.error(action, request.id, "internal error", ErrorCode.INTERNAL_ERROR)
    if reply is not None:
        conn.send_payload(reply)


def _authorize(conn: Connection, action: str) -> None:
    role = conn.role
    if role is None:
        raise ActionError(f'action "{action}" needs authentication', ErrorCode.NOT_AUTHENTICATED)
    if auth.required_permission(action) not in role.permissions:
        raise ActionError(f'action "{action}": permission denied', ErrorCode.PERMISSION_DENIED)


def _check_channel(conn: Connection, action: str, channel: str) -> None:
    role = conn.role
    if role is not None and not auth.channel_allowed(role, channel):
        raise ActionError(
            f'action "{action}": permission denied on channel {channel}', ErrorCode.PERMISSION_DENIED
        )


def _channel_key(conn: Connection, channel: str) -> str:
    return channel_key(conn.app_key, channel)


def _string_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ActionError(f"{name} must be a string", ErrorCode.BAD_SCHEMA)
    return value


# --------------------------------------------------------------------------- auth (PROTOCOL §3)
def handshake(conn: Connection, request: Request) -> bytes:
    body = request.body
    method = body.get("method")
    if method != auth.AUTH_METHOD:
        raise ActionError(f"invalid auth method: {method}", ErrorCode.INVALID_AUTH_METHOD)
    data = body.get("data")
    role = data.get("role") if isinstance(data, dict) else None
    if not isinstance(role, str) or not role:
        raise ActionError("handshake: missing role", ErrorCode.BAD_SCHEMA)
    # A new handshake resets the connection to unauthenticated (PROTOCOL §3).
    if conn.role_name is not None:
        conn.reset_subscriptions()
        conn.role_name = None
    conn.pending_role = role
    conn.nonce = auth.new_nonce()
    broker = conn.broker
    return protocol.ok(
        request.action,
        request.id,
        {
            "data": {
                "nonce": conn.nonce,
                "version": __version__,
                "connection_id": conn.id,
                "node": broker.node,
            }
        },
    )


def authenticate(conn: Connection, request: Request) -> bytes | None:
    body = request.body
    method = body.get("method")
    if method != auth.AUTH_METHOD:
        raise ActionError(f"invalid auth method: {method}", ErrorCode.INVALID_AUTH_METHOD)
    credentials = body.get("credentials")
    candidate = credentials.get("hash") if isinstance(credentials, dict) else None
    nonce, role_name = conn.nonce, conn.pending_role
    conn.nonce = None  # a nonce answers one attempt only: no replaying a captured hash
    app = conn.app
    role = app.roles.get(role_name) if (app is not None and role_name) else None
    if role is None:
        return _auth_failed(conn, request, "invalid_role")
    if nonce is None or not auth.verify_challenge(role, nonce, candidate, time.time()):
        return _auth_failed(conn, request, "challenge_failed")
    conn.role_name = role.name
    conn.auth_failures = 0
    conn.broker.connection_authenticated(conn)
    return protocol.ok(request.action, request.id, {})


def _auth_failed(conn: Connection, request: Request, reason: str) -> bytes | None:
    conn.auth_failures += 1
    conn.broker.stats.auth_failures += 1
    log.info("connection %s: authentication failed (%s)", conn.id, reason)
    reply = protocol.error(
        request.action, request.id, "authentication_failed", ErrorCode.AUTHENTICATION_FAILED, reason=reason
    )
    if conn.auth_failures >= conn.broker.settings.auth_max_attempts:
        conn.send_payload(reply)
        conn.close(1008, "too many failed authentications")
        return None
    return reply


# --------------------------------------------------------------------------- publish (PROTOCOL §5)
def publish(conn: Connection, request: Request) -> bytes | None:
    body = request.body
    if body.get("message") is None:
        raise ActionError("publish: empty message", ErrorCode.EMPTY_MESSAGE)
    channels = _publish_channels(body)
    for channel in channels:
        _check_channel(conn, request.action, channel)
    broker = conn.broker
    broker.limits.check_publish(conn)
    message = orjson.dumps(body["message"])
    broker.limits.check_message_size(conn, len(message))
    policy = broker.history_policy(conn.app_key)
    outcome = _PublishOutcome(conn, request, channels)
    republisher = broker.engine.republisher
    rules = republisher.rules_for(conn.app)  # None for an app without republish rules
    for channel in channels:
        callback = outcome.on_result
        if rules is not None:
            callback = republisher.after_publish(rules, channel, body["message"], policy, callback)
        broker.engine.publish(_channel_key(conn, channel), message, policy, callback)
    broker.stats.on_publish(conn, channels, len(message))
    return None


def _publish_channels(body: dict[str, Any]) -> list[str]:
    channels = body.get("channels")
    if channels is not None:  # C++ sends only "channels"; when both are present it wins
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise ActionError("publish: channels must be a list of non-empty strings", ErrorCode.BAD_SCHEMA)
        channels = list(dict.fromkeys(channels))
    else:
        channel = _string_field(body, "channel")
        channels = [channel] if channel else []
    if not channels:
        raise ActionError("publish: no channel or channels field", ErrorCode.MISSING_CHANNEL)
    return channels


class _PublishOutcome:
    """Collects the per-channel results of one publish and replies once all are in."""

    __slots__ = ("channels", "conn", "error", "first_position", "pending", "request")

    def __init__(self, conn: Connection, request: Request, channels: list[str]) -> None:
        self.conn = conn
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
            self.conn.broker.stats.errors += 1
            reply = protocol.error(request.action, request.id, self.error.message, self.error.code)
        else:
            reply = protocol.ok(
                request.action, request.id, {"channels": self.channels, "position": self.first_position}
            )
        self.conn.send_payload(reply)


# --------------------------------------------------------------------------- subscribe / unsubscribe
def subscribe(conn: Connection, request: Request) -> bytes | None:
    body = request.body
    broker = conn.broker
    filter_text = body.get("filter")
    stream_filter = None
    channel = _string_field(body, "channel")
    # The id defaults to the channel the client named (the C++ SDK keys its callbacks by it), even when a
    # filter's FROM clause decides which channel is actually followed.
    subscription_id = _string_field(body, "subscription_id") or channel
    if filter_text is not None and filter_text != "":
        if not isinstance(filter_text, str):
            raise ActionError("filter must be a string", ErrorCode.INVALID_FILTER)
        try:
            stream_filter = compile_filter(
                filter_text,
                max_length=broker.settings.filter_max_length,
                max_depth=broker.settings.filter_max_depth,
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
    position = body.get("position")
    if position == "$":
        position = None
    if position is not None and (not isinstance(position, str) or parse_position(position) is None):
        raise ActionError(f"Invalid position: {position}", ErrorCode.INVALID_POSITION)
    batch_size = body.get("batch_size", 1)
    if batch_size is None:
        batch_size = 1
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ActionError(f"Invalid batch_size: {batch_size}", ErrorCode.INVALID_BATCH_SIZE)
    _check_channel(conn, request.action, channel)

    existing = conn.subscriptions.get(subscription_id)
    if existing is not None:
        if body.get("force") is not True:
            raise ActionError(
                f"subscription_id {subscription_id} is already in use", ErrorCode.ALREADY_SUBSCRIBED
            )
        broker.engine.unsubscribe(existing)
        del conn.subscriptions[subscription_id]
    broker.limits.check_subscriptions(conn)

    sub = Subscription(
        conn,
        subscription_id,
        channel,
        _channel_key(conn, channel),
        stream_filter,
        batch_size,
        broker.settings.batch_flush_interval,
    )
    conn.subscriptions[subscription_id] = sub
    try:
        tail = broker.engine.subscribe(sub, replay=position is not None)
    except EngineError:
        conn.subscriptions.pop(subscription_id, None)
        raise
    if conn.closing or conn.subscriptions.get(subscription_id) is not sub:
        broker.engine.unsubscribe(sub)  # the connection went away while we waited for Redis
        return None
    sub.position = tail
    conn.send_payload(
        protocol.ok(
            request.action,
            request.id,
            {"subscription_id": subscription_id, "position": tail, "channel": channel, "node": broker.node},
        )
    )
    if position is not None:
        broker.engine.replay(sub, position, broker.history_policy(conn.app_key))
    return None


def unsubscribe(conn: Connection, request: Request) -> bytes:
    subscription_id = request.body.get("subscription_id")
    sub = conn.subscriptions.pop(subscription_id, None) if isinstance(subscription_id, str) else None
    if sub is None:
        raise ActionError(f"Invalid subscriptionId: {subscription_id}", ErrorCode.NOT_SUBSCRIBED)
    sub.flush()
    conn.broker.engine.unsubscribe(sub)
    return protocol.ok(
        request.action, request.id, {"subscription_id": subscription_id, "position": sub.position}
    )


# --------------------------------------------------------------------------- key/value
def write(conn: Connection, request: Request) -> bytes:
    body = request.body
    channel = _string_field(body, "channel")
    if channel is None:
        raise ActionError("write: missing channel field", ErrorCode.MISSING_CHANNEL)
    if body.get("message") is None:
        raise ActionError("write: empty message", ErrorCode.EMPTY_MESSAGE)
    _check_channel(conn, request.action, channel)
    broker = conn.broker
    message = orjson.dumps(body["message"])
    broker.limits.check_message_size(conn, len(message))
    position = broker.engine.publish_and_wait(
        _channel_key(conn, channel), message, broker.history_policy(conn.app_key)
    )
    broker.stats.on_write(conn, channel, len(message))
    return protocol.ok(request.action, request.id, {"stream": position})


def read(conn: Connection, request: Request) -> bytes:
    body = request.body
    channel = _string_field(body, "channel")
    if channel is None:
        raise ActionError("read: missing channel field", ErrorCode.MISSING_CHANNEL)
    position = body.get("position")
    if position is not None and (not isinstance(position, str) or parse_position(position) is None):
        raise ActionError(f"Invalid position: {position}", ErrorCode.INVALID_POSITION)
    _check_channel(conn, request.action, channel)
    raw, found_at = conn.broker.engine.read(_channel_key(conn, channel), position)
    conn.broker.stats.on_read(conn, channel, len(raw or b""))
    message = orjson.Fragment(raw) if raw is not None else None
    return protocol.ok(request.action, request.id, {"message": message, "position": found_at})


def delete(conn: Connection, request: Request) -> bytes:
    channel = _string_field(request.body, "channel")
    if channel is None:
        raise ActionError("delete: missing channel field", ErrorCode.MISSING_CHANNEL)
    _check_channel(conn, request.action, channel)
    conn.broker.engine.delete(_channel_key(conn, channel))
    return protocol.ok(request.action, request.id, {})


# --------------------------------------------------------------------------- admin
def get_connections(conn: Connection, request: Request) -> bytes:
    ids = conn.broker.cluster.connection_ids(conn.broker.admin_scope(conn))
    return protocol.ok(request.action, request.id, {"connections": ids})


def close_connection(conn: Connection, request: Request) -> bytes | None:
    target = request.body.get("connection_id")
    if not isinstance(target, str) or not target:
        raise ActionError("Missing connection id", ErrorCode.UNKNOWN_CONNECTION)
    broker = conn.broker
    if target == conn.id:  # closing oneself: the reply must go out before the close frame
        conn.send_payload(protocol.ok(request.action, request.id, {}))
        conn.close(1000, "closed by admin")
        return None
    if not broker.cluster.close_connection(target, broker.admin_scope(conn)):
        raise ActionError("Cannot find connection id", ErrorCode.UNKNOWN_CONNECTION)
    return protocol.ok(request.action, request.id, {})


HANDLERS: dict[str, Handler] = {
    "auth/handshake": handshake,
    "auth/authenticate": authenticate,
    "rtm/publish": publish,
    "rtm/subscribe": subscribe,
    "rtm/unsubscribe": unsubscribe,
    "rtm/write": write,
    "rtm/read": read,
    "rtm/delete": delete,
    "admin/get_connections": get_connections,
    "admin/close_connection": close_connection,
}
assert set(HANDLERS) == protocol.ACTIONS
