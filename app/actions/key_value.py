"""``rtm/write``, ``rtm/read``, ``rtm/delete``: a channel's newest message as a value (PROTOCOL §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from .. import protocol
from ..channels import channel_key
from ..protocol import ActionError, ErrorCode, Request
from .common import check_channel, position_field, string_field

if TYPE_CHECKING:
    from ..services import Client, Services
    from ..session import Session


def _channel(request: Request, verb: str) -> str:
    channel = string_field(request.body, "channel")
    if channel is None:
        raise ActionError(f"{verb}: missing channel field", ErrorCode.MISSING_CHANNEL)
    return channel


def write(session: Session, request: Request, services: Services, client: Client) -> bytes:
    body = request.body
    channel = _channel(request, "write")
    if body.get("message") is None:
        raise ActionError("write: empty message", ErrorCode.EMPTY_MESSAGE)
    check_channel(session, request.action, channel)
    message = orjson.dumps(body["message"])
    services.limits.check_message_size(session.app, len(message))
    position = services.engine.publish_and_wait(
        channel_key(session.app_key, channel), message, services.config.history_policy(session.app_key)
    )
    services.stats.on_write(session, channel, len(message))
    return protocol.ok(request.action, request.id, {"stream": position})


def read(session: Session, request: Request, services: Services, client: Client) -> bytes:
    channel = _channel(request, "read")
    position = position_field(request.body)
    check_channel(session, request.action, channel)
    raw, found_at = services.engine.read(channel_key(session.app_key, channel), position)
    services.stats.on_read(session, channel, len(raw or b""))
    message = orjson.Fragment(raw) if raw is not None else None
    return protocol.ok(request.action, request.id, {"message": message, "position": found_at})


def delete(session: Session, request: Request, services: Services, client: Client) -> bytes:
    channel = _channel(request, "delete")
    check_channel(session, request.action, channel)
    services.engine.delete(channel_key(session.app_key, channel), session.app_key)
    return protocol.ok(request.action, request.id, {})
