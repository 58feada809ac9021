"""``admin/get_connections`` and ``admin/close_connection``: an app's connections, cluster-wide."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import protocol
from ..protocol import ActionError, ErrorCode, Request
from ..services import admin_scope
from ..websocket import CLOSE_NORMAL

if TYPE_CHECKING:
    from ..services import Client, Services
    from ..session import Session


def get_connections(session: Session, request: Request, services: Services, client: Client) -> bytes:
    ids = services.cluster.connection_ids(admin_scope(session.app_key))
    return protocol.ok(request.action, request.id, {"connections": ids})


def close_connection(session: Session, request: Request, services: Services, client: Client) -> bytes | None:
    target = request.body.get("connection_id")
    if not isinstance(target, str) or not target:
        raise ActionError("Missing connection id", ErrorCode.UNKNOWN_CONNECTION)
    if target == session.id:  # closing oneself: the reply must go out before the close frame
        client.send_payload(protocol.ok(request.action, request.id, {}))
        client.close(CLOSE_NORMAL, "closed by admin")
        return None
    if not services.cluster.close_connection(target, admin_scope(session.app_key)):
        raise ActionError("Cannot find connection id", ErrorCode.UNKNOWN_CONNECTION)
    return protocol.ok(request.action, request.id, {})
