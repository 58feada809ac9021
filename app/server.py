"""The WSGI application of one process, and serving it with gevent (``python -m app run``).

Routing: WebSocket upgrades (any path) go to the broker; ``/health/``, ``/version/`` and ``/`` are the
plain HTTP paths of PROTOCOL §1; ``/admin/`` is the Flask admin panel. The same application object is what
``wsgi.py`` gives gunicorn.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from . import __version__
from .broker import Broker, plain_response
from .logs import setup_logging
from .settings import Settings
from .websocket import CobraWebSocketHandler, is_websocket_request

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CobraApplication:
    """The process's WSGI callable. The broker starts on first use, in the process that serves (so a
    gunicorn master that imports this before forking never holds greenlets or Redis sockets)."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.broker = Broker(settings, redis_url)
        self.admin: WSGIApp | None = None
        self._extra_routes: dict[str, WSGIApp] = {}

    def start(self) -> None:
        self.broker.start()

    def mount(self, prefix: str, wsgi_app: WSGIApp) -> None:
        self._extra_routes[prefix] = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.broker.started:
            self.broker.start()
        if is_websocket_request(environ):
            return self.broker.handle_websocket(environ, start_response)
        path = environ.get("PATH_INFO", "/")
        for prefix, wsgi_app in self._extra_routes.items():
            if path == prefix.rstrip("/") or path.startswith(prefix):
                return wsgi_app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return plain_response(start_response, "405 Method Not Allowed", "KO\n", [("Allow", "GET, HEAD")])
        if path == "/health/":
            return plain_response(start_response, "200 OK", "OK\n")  # liveness: no Redis access
        if path == "/version/":
            return plain_response(start_response, "200 OK", f"{__version__}\n")
        if path == "/":
            started = datetime.fromtimestamp(self.broker.started_at, UTC).isoformat(timespec="seconds")
            banner = f"cobra-broker {__version__}\nnode: {self.broker.node}\nstarted: {started}\n"
            return plain_response(start_response, "200 OK", banner)
        return plain_response(start_response, "404 Not Found", "KO\n")


def create_application(settings: Settings, redis_url: str) -> CobraApplication:
    application = CobraApplication(settings, redis_url)
    try:
        from admin import create_admin_app
    except ImportError:  # the admin panel is optional
        return application
    application.mount("/admin/", create_admin_app(settings, redis_url))
    return application


def serve(settings: Settings, redis_url: str, on_ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; then close clients with 1001 and flush publishes (PROTOCOL §1)."""
    setup_logging(settings)
    application = create_application(settings, redis_url)
    try:
        application.start()
    except Exception as exc:
        log.error("cannot start: %s", exc)
        return 1
    server = WSGIServer(
        (settings.host, settings.port),
        application,
        handler_class=CobraWebSocketHandler,
        log=None,
        error_log=logging.getLogger("gevent.pywsgi"),
    )
    try:
        server.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        application.broker.shutdown(1.0)
        return 1
    stopped = gevent.event.Event()

    def graceful(signum: int) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        server.close()  # stop accepting
        application.broker.shutdown()
        server.stop(timeout=1.0)
        stopped.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, lambda s=signum: gevent.spawn(graceful, s))
    if on_ready is not None:
        on_ready()
    started = time.monotonic()
    stopped.wait()
    log.info("stopped after %.0f s", time.monotonic() - started)
    sys.stdout.flush()
    return 0
