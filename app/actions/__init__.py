"""What each action of PROTOCOL §3 to §5 does: validation, permission checks, the engine call, the reply.

A handler is ``handler(session, request, services, client)``: the :class:`~app.session.Session` it acts
for, the parsed request, the :class:`~app.services.Services` of the broker and the
:class:`~app.services.Client` it answers. It returns the reply (bytes), or None when the reply is sent
later (publishes are acknowledged only once the engine holds them), and raises :class:`ActionError` for
an ``<action>/error`` reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import protocol
from ..engine import EngineError
from ..protocol import ActionError, ErrorCode, FatalError, Request
from ..websocket import CLOSE_NORMAL
from .admin import close_connection, get_connections
from .authentication import authenticate, handshake
from .common import authorize, drop_subscriptions
from .key_value import delete, read, write
from .pubsub import MAX_BATCH_SIZE, publish, subscribe, unsubscribe

if TYPE_CHECKING:
    from ..services import Client, Services
    from ..session import Session

log = logging.getLogger(__name__)

Handler = Callable[["Session", Request, "Services", "Client"], bytes | None]


def dispatch(
    session: Session,
    payload: bytes,
    services: Services,
    client: Client,
    parse: Callable[[bytes], Request | FatalError] = protocol.parse_request,
) -> None:
    """Handle one incoming message; every outcome is a reply, a fatal close, or a logged bug. ``parse``
    decodes it: JSON, or CBOR on a CBOR connection (:func:`app.codec.parse_request`)."""
    request = parse(payload)
    if isinstance(request, FatalError):
        services.stats.errors += 1
        client.send_payload(protocol.fatal(request.reason))
        client.close(CLOSE_NORMAL, "bad_schema")
        return
    action = request.action
    try:
        if request.body_error is not None:
            raise ActionError(request.body_error, request.error_code)
        if not action.startswith("auth/"):
            authorize(session, action)
        reply = HANDLERS[action](session, request, services, client)
    except ActionError as exc:
        services.stats.errors += 1
        reply = protocol.action_error(action, request.id, exc)
    except EngineError as exc:
        services.stats.errors += 1
        reply = protocol.error(action, request.id, exc.message, exc.code)
    except Exception:
        # A bug must cost one request, not the connection or the process.
        log.exception("connection %s: %s failed", session.id, action, extra={"connection_id": session.id})
        reply = _internal_error(action, request.id)
    if reply is not None:
        client.send_payload(reply)


def _internal_error(action: str, pdu_id: object) -> bytes:
    try:
        return protocol.error(action, pdu_id, "internal error", ErrorCode.INTERNAL_ERROR)
    except TypeError:
        # An id orjson cannot echo (parse_request refuses them; this is the net under it): the reply must
        # still go out, or the error path itself escapes and costs the connection.
        return protocol.error(action, protocol.DEFAULT_ID, "internal error", ErrorCode.INTERNAL_ERROR)


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

__all__ = ["HANDLERS", "MAX_BATCH_SIZE", "Handler", "dispatch", "drop_subscriptions"]
