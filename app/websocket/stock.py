"""Serving the broker behind gevent-websocket's own handler: gunicorn's stock ``GeventWebSocketWorker``.

That handler upgrades every well-formed upgrade request *before* the application runs: the 101 is already
sent (without our ``X-Cobra-*`` headers and without permessage-deflate, which it does not negotiate), and its
own WebSocket object sits in ``environ["wsgi.websocket"]``. :class:`StockUpgrades` wraps the application so
that the broker still runs such a connection with its own framing: it offers the broker the usual ``accept``
(:data:`~app.websocket.transport.ACCEPT_KEY`), which here takes the upgraded socket over instead of sending a
101. When the broker refuses the upgrade (unknown app key, a limit, a malformed request), an HTTP status can
no longer be sent, so the client gets a close frame carrying the refusal instead.

:class:`app.gunicorn_worker.CobraWorker` serves the bare application with our handler and needs none of this.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .frames import CLOSE_INTERNAL_ERROR, CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR, encode_close
from .handshake import SUBPROTOCOL, Upgrade
from .transport import ACCEPT_KEY, WebSocket, take_over_socket

log = logging.getLogger(__name__)

STOCK_WEBSOCKET_KEY = "wsgi.websocket"  # where gevent-websocket's handler puts its upgraded socket

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def refusal_close_code(status: str) -> int:
    """The close code that carries an HTTP refusal after the 101: 400 → 1002, other 4xx → 1008, 5xx → 1011."""
    code = status.split(" ", 1)[0]
    if code == "400":
        return CLOSE_PROTOCOL_ERROR
    return CLOSE_INTERNAL_ERROR if code.startswith("5") else CLOSE_POLICY_VIOLATION


def refusal_reason(status: str, body: bytes) -> str:
    """``403 Forbidden: KO`` — the status and the first line of the body, within a close frame's 123 bytes."""
    first_line = body.decode("utf-8", "replace").strip().splitlines()[:1]
    reason = f"{status}: {first_line[0]}" if first_line else status
    return reason.encode("utf-8")[:123].decode("utf-8", "ignore")


def _selected_subprotocol(handler: Any) -> str | None:
    """The subprotocol gevent-websocket's 101 announced (latin-1 bytes in gevent's response headers)."""
    for name, value in getattr(handler, "response_headers", ()):
        name = name.decode("latin-1") if isinstance(name, bytes) else name
        if name.lower() == "sec-websocket-protocol":
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def adopt(stock: Any, upgrade: Upgrade, max_message_size: int, compress_min_size: int) -> WebSocket:
    """Our :class:`WebSocket` on the socket gevent-websocket upgraded."""
    handler = stock.handler
    # The close handshake is the broker's from now on: marked closed, gevent-websocket's handler sends no
    # close frame of its own when the application returns.
    stock.closed = True
    leftover = take_over_socket(handler.socket, handler.rfile)
    # What the 101 said is what the client holds us to: no deflate, whatever it offered.
    agreed = dataclasses.replace(upgrade, deflate=None, subprotocol=_selected_subprotocol(handler))
    return WebSocket(handler.socket, agreed, max_message_size, compress_min_size, leftover)


class StockUpgrades:
    """WSGI middleware: run connections that gevent-websocket's handler already upgraded (see above)."""

    def __init__(self, application: WSGIApp, on_first_request: Callable[[], object] | None = None) -> None:
        self.application = application
        self._told = False
        # Run once, in the serving process, at its first request of any kind (the stock worker's lifecycle
        # is adopted there when the application was loaded in the master, with --preload).
        self._on_first_request = on_first_request

    def app_protocol(self, path: str) -> str:
        """gevent-websocket asks its application which subprotocol to select when the client offers it."""
        return SUBPROTOCOL

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._on_first_request is not None:
            first, self._on_first_request = self._on_first_request, None
            first()
        stock = environ.get(STOCK_WEBSOCKET_KEY)
        if stock is None or ACCEPT_KEY in environ:
            return self.application(environ, start_response)
        if not self._told:
            self._told = True
            log.warning(
                "served by gevent-websocket's own handler (the stock gunicorn worker): "
                "no permessage-deflate, refusals come as close frames after the 101 (and with --preload the "
                "broker starts on the first request); use -k app.gunicorn_worker.CobraWorker "
                "(gunicorn.conf.py names it) for all of it"
            )
        adopted: list[WebSocket] = []

        def accept(upgrade: Upgrade, max_message_size: int, compress_min_size: int) -> WebSocket:
            ws = adopt(stock, upgrade, max_message_size, compress_min_size)
            adopted.append(ws)
            return ws

        statuses: list[str] = []

        def record_status(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
            statuses.append(status)
            return lambda data: None

        environ[ACCEPT_KEY] = accept
        result = self.application(environ, record_status)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not adopted and statuses and not stock.closed:
            self._refuse(stock, statuses[-1], body)
        return []

    @staticmethod
    def _refuse(stock: Any, status: str, body: bytes) -> None:
        reason = refusal_reason(status, body)
        log.info("refused after the upgrade: %s", reason)
        stock.closed = True
        try:
            stock.handler.socket.sendall(encode_close(refusal_close_code(status), reason))
        except OSError:
            pass  # the client is gone already
