"""``auth/handshake`` and ``auth/authenticate`` (PROTOCOL §3): the role-secret challenge."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import __version__, auth, protocol
from ..protocol import ActionError, ErrorCode, Request
from ..websocket import CLOSE_POLICY_VIOLATION
from .common import drop_subscriptions, subscriptions_changed

if TYPE_CHECKING:
    from ..services import Client, Services
    from ..session import Session

log = logging.getLogger(__name__)


def _check_method(body: dict) -> None:
    method = body.get("method")
    if method != auth.AUTH_METHOD:
        raise ActionError(f"invalid auth method: {method}", ErrorCode.INVALID_AUTH_METHOD)


def handshake(session: Session, request: Request, services: Services, client: Client) -> bytes:
    body = request.body
    _check_method(body)
    data = body.get("data")
    role = data.get("role") if isinstance(data, dict) else None
    if not isinstance(role, str) or not role:
        raise ActionError("handshake: missing role", ErrorCode.BAD_SCHEMA)
    # A new handshake resets the connection to unauthenticated (PROTOCOL §3).
    reset = session.role_name is not None
    if reset:
        drop_subscriptions(session, services)
    nonce = auth.new_nonce()
    session.begin_handshake(role, nonce)
    if reset:  # the registry lists it unauthenticated, with no subscription, until it authenticates again
        subscriptions_changed(session, services)
    return protocol.ok(
        request.action,
        request.id,
        {
            "data": {
                "nonce": nonce,
                "version": __version__,
                "connection_id": session.id,
                "node": services.config.node,
            }
        },
    )


def authenticate(session: Session, request: Request, services: Services, client: Client) -> bytes | None:
    body = request.body
    _check_method(body)
    credentials = body.get("credentials")
    candidate = credentials.get("hash") if isinstance(credentials, dict) else None
    nonce, role_name = session.take_nonce()  # spent whatever the outcome: no replaying a captured hash
    app = session.app
    role = app.roles.get(role_name) if (app is not None and role_name) else None
    if role is None:
        return _auth_failed(session, request, services, client, "invalid_role")
    if nonce is None or not auth.verify_challenge(role, nonce, candidate, time.time()):
        return _auth_failed(session, request, services, client, "challenge_failed")
    # Checked again here, on this process's count: a burst of its anonymous sockets of one app cannot all
    # get in. The other processes' counts were checked at the upgrade; they arrive with heartbeats, so
    # checking them again here would refuse a client the upgrade had just let in.
    held = services.cluster.authenticated_connections(app.key, cluster_wide=False)
    refusal = services.limits.app_connection_refusal(app, held)
    if refusal is not None:
        log.info("connection %s: %s", session.id, refusal, extra={"connection_id": session.id})
        client.send_payload(
            protocol.error(
                request.action,
                request.id,
                "authentication_failed",
                ErrorCode.AUTHENTICATION_FAILED,
                reason="connection_limit",
            )
        )
        client.close(CLOSE_POLICY_VIOLATION, "app at its connection limit")
        return None
    session.authenticated(role.name)
    services.cluster.connection_changed(session.id, session.info())
    return protocol.ok(request.action, request.id, {})


def _auth_failed(
    session: Session, request: Request, services: Services, client: Client, reason: str
) -> bytes | None:
    session.auth_failures += 1
    services.stats.auth_failures += 1
    log.info(
        "connection %s: authentication failed (%s)", session.id, reason, extra={"connection_id": session.id}
    )
    reply = protocol.error(
        request.action, request.id, "authentication_failed", ErrorCode.AUTHENTICATION_FAILED, reason=reason
    )
    if session.auth_failures >= services.config.settings.auth_max_attempts:
        client.send_payload(reply)
        client.close(CLOSE_POLICY_VIOLATION, "too many failed authentications")
        return None
    return reply
