"""The WSGI application of one process, and serving it with gevent (``python -m app run``).

Routing: WebSocket upgrades (any path) go to the broker; ``/health/``, ``/version/`` and ``/`` are the
plain HTTP paths of PROTOCOL §1; ``/ready/`` (also ``/health/ready/``) is readiness, ``/metrics`` the
Prometheus exposition of the whole cluster; ``/admin/`` is the Flask admin panel. The same application
object is what ``wsgi.py`` gives gunicorn.
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
import gevent.lock
import redis
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from . import __version__, metrics
from .bootstrap import prepare_store
from .broker import Broker, plain_response
from .cluster import node_stats
from .config_store import wait_for_redis
from .edge_guard import EdgeGuard
from .http_publish import PUBLISH_PATH, HttpPublishEndpoint
from .live_tail import LiveTail
from .logs import setup_logging
from .settings import Settings
from .websocket import CobraWebSocketHandler, is_websocket_request
from .websocket.listener import CobraWSGIServer

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# With and without the trailing slash: probes and people type both.
HEALTH_PATHS = ("/health/", "/health")
READY_PATHS = ("/ready/", "/ready", "/health/ready/", "/health/ready")
VERSION_PATHS = ("/version/", "/version")


class CobraApplication:
    """The process's WSGI callable. The broker starts after the fork, in the process that serves: from the
    gunicorn worker class (:mod:`app.gunicorn_worker`), from :func:`serve`, or else on the first request. A
    gunicorn master that imports this (``--preload``) never holds greenlets or Redis sockets."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.broker = Broker(settings, redis_url)
        self.admin: WSGIApp | None = None
        self.live_tail: LiveTail | None = None  # the admin panel's door to this process's engine
        # Plain HTTP (not an upgrade): mounted applications by path prefix, the broker's own paths else.
        self._mounts: dict[str, WSGIApp] = {}
        self._http: WSGIApp = self._plain_http
        self._start_lock: gevent.lock.Semaphore | None = None
        self.http_publish = HttpPublishEndpoint(self.broker.services)  # PROTOCOL §13
        metrics.app_labeller(settings.metrics_apps, {})  # a misspelt mode fails at start, not per scrape

    def start(self) -> None:
        """Prepare the config store (well-known apps, ``COBRA_APPS_CONFIG``: the same under ``python -m app
        run`` and every gunicorn worker, see :mod:`app.bootstrap`), then start the broker. Once: callers
        racing each other (a worker's lifecycle and a first request) wait for the first one."""
        if self._start_lock is None:
            self._start_lock = gevent.lock.Semaphore()
        with self._start_lock:
            if not self.broker.started:
                self._start()

    def _start(self) -> None:
        settings = self.settings
        store = self.broker.store
        wait_for_redis(store.redis, settings.redis_wait_timeout, "the config Redis")
        prepare_store(store, settings.apps_config, who=f"broker:{settings.node}")
        if not store.admin_users():
            log.warning(
                "the config store has no admin user yet: run `python -m app init --admin` once (with the "
                "same REDIS_URL) to create the first one and print its password"
            )
        self.broker.start()

    @property
    def edge(self) -> EdgeGuard:
        """The limits of this process's anonymous sockets; the handler finds them here."""
        return self.broker.edge

    def shutdown(self, timeout: float = 10.0) -> None:
        if self.live_tail is not None:
            self.live_tail.close()
        self.broker.shutdown(timeout)

    def bind_port(self, port: int) -> None:
        """The port this process really listens on (gunicorn's ``-b``), for the node name and registry."""
        self.settings = self.settings.replace(port=port)
        self.broker.settings = self.settings

    def mount(self, prefix: str, wsgi_app: WSGIApp) -> None:
        """Serve ``prefix`` (``/admin`` and everything under ``/admin/``) with ``wsgi_app``, which finds the
        prefix in SCRIPT_NAME and the rest in PATH_INFO (werkzeug's dispatcher moves it, as a proxy would)."""
        self._mounts[prefix.rstrip("/")] = wsgi_app
        self._http = DispatcherMiddleware(self._plain_http, self._mounts)

    def _ensure_started(self) -> str | None:
        """Start the broker on first use when nobody did (a WSGI server without our hooks); the reason
        when it cannot start."""
        if self.broker.started:
            return None
        if not self.broker.stopping:
            try:
                self.start()  # concurrent first requests start it once
            except Exception as exc:
                log.error("cannot start the broker: %s", exc)
                return str(exc)
        return None if self.broker.started else "the broker is stopping"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        websocket = is_websocket_request(environ)
        if path in HEALTH_PATHS and not websocket and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return plain_response(start_response, "200 OK", "OK\n")  # liveness: no Redis access
        failure = self._ensure_started()
        if failure is not None:
            return plain_response(start_response, "503 Service Unavailable", f"not started: {failure}\n")
        if websocket:  # on any path, the admin prefix included (PROTOCOL §1)
            return self.broker.handle_websocket(environ, start_response)
        return self._http(environ, start_response)

    def _plain_http(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The broker's own HTTP paths (PROTOCOL §1): GET or HEAD only."""
        path = environ.get("PATH_INFO", "/")
        if path == PUBLISH_PATH:
            return self.http_publish(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return plain_response(start_response, "405 Method Not Allowed", "KO\n", [("Allow", "GET, HEAD")])
        if path in READY_PATHS:
            return self._readiness(start_response)
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if path in VERSION_PATHS:
            return plain_response(start_response, "200 OK", f"{__version__}\n")
        if path == "/":
            started = datetime.fromtimestamp(self.broker.started_at, UTC).isoformat(timespec="seconds")
            banner = f"cobra-broker {__version__}\nnode: {self.broker.node}\nstarted: {started}\n"
            return plain_response(start_response, "200 OK", banner)
        return plain_response(start_response, "404 Not Found", "KO\n")

    def _readiness(self, start_response: Callable[..., Any]) -> list[bytes]:
        """Readiness (unlike /health/): 503 while the config store or any shard does not answer."""
        problems = self.broker.readiness() + self.broker.edge.problems()
        topology = _replicated_shards(self.broker.engine.shard_statuses())
        if not problems:
            return plain_response(start_response, "200 OK", "ready\n" + topology)
        body = "not ready\n" + "".join(f"- {problem}\n" for problem in problems) + topology
        return plain_response(start_response, "503 Service Unavailable", body)

    def _metrics(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The cluster's numbers; with ``metrics_token`` set only for ``Authorization: Bearer <token>``.
        Per-app series are labelled as ``metrics_apps`` says (see :func:`metrics.app_labeller`)."""
        broker = self.broker
        token = self.settings.metrics_token
        if token and not metrics.bearer_token_matches(environ.get("HTTP_AUTHORIZATION"), token):
            challenge = [("WWW-Authenticate", 'Bearer realm="metrics"')]
            return plain_response(start_response, "401 Unauthorized", "KO\n", challenge)
        try:
            documents, cluster_view = node_stats(broker.store.redis), True
        except redis.RedisError as exc:
            log.warning("/metrics: cannot read the cluster's stats, reporting this process only: %s", exc)
            documents, cluster_view = {}, False
        own = broker.stats_publisher.last_document
        if own is not None and (not cluster_view or broker.node not in documents):
            documents[broker.node] = own
        labels = {key: app.metrics_label for key, app in broker.config.apps.items()}
        body = metrics.render(
            documents, cluster_view, metrics.app_labeller(self.settings.metrics_apps, labels)
        )
        start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]


def create_application(settings: Settings, redis_url: str) -> CobraApplication:
    application = CobraApplication(settings, redis_url)
    try:
        from admin import create_admin_app
    except ImportError:  # the admin panel is optional
        return application
    broker = application.broker
    # The tail subscribes through this process's engine; the engine routes by the broker's config view.
    live_tail = LiveTail(broker.engine, lambda: broker.config, max_groups=settings.max_groups)
    admin = create_admin_app(settings, redis_url, live_tail=live_tail)
    application.admin, application.live_tail = admin, live_tail
    application.mount(admin.config["ADMIN_PREFIX"], admin)
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
    server = CobraWSGIServer(
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


def _replicated_shards(statuses: list[Any]) -> str:
    """One line per shard that is more than one node (Sentinel): its master, replicas and last failover,
    so a probe's output says where writes go. Single-node shards add nothing (the body stays "ready")."""
    lines = []
    for status in statuses:
        if status.kind == "single":
            continue
        when = "never"
        if status.last_failover is not None:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.last_failover))
        replicas = ", ".join(status.replicas) or "none"
        lines.append(
            f"shard {status.name} ({status.kind}): master {status.master or 'unknown'}, replicas {replicas}, "
            f"failovers {status.failovers}, last failover {when}\n"
        )
    return "".join(lines)
