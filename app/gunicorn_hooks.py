"""The broker's life inside a gunicorn worker: started after the fork, stopped gracefully on SIGTERM.

gunicorn's gevent worker, on SIGTERM, only clears ``worker.alive``; its run loop then stops accepting and
waits up to ``graceful_timeout`` for open requests to end. A WebSocket never ends by itself, so without
help every client would be cut off by SIGKILL with publishes still queued. Here a greenlet watches the
flag and runs :meth:`Broker.shutdown` (flush accepted publishes, close clients with 1001, leave the
cluster) as soon as it drops, and the process does not exit before that shutdown is over.

Two ways in, both idempotent: the server hooks of ``gunicorn.conf.py``, and :func:`install`, which
``wsgi.py`` calls so that the stock ``-k geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` command
behaves the same without our config file.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import gevent

log = logging.getLogger(__name__)

# gunicorn's arbiter halts when a worker exits with this code, instead of respawning it in a tight loop:
# what we want when Redis stays unreachable for the whole start-up timeout.
WORKER_BOOT_ERROR = 3


def _application(worker: Any) -> Any:
    from .server import CobraApplication

    application = getattr(worker, "wsgi", None)
    return application if isinstance(application, CobraApplication) else None


def _listening_port(worker: Any) -> int | None:
    for sock in getattr(worker, "sockets", ()):
        try:
            address = sock.getsockname()
        except OSError:
            continue
        if isinstance(address, tuple):
            return int(address[1])
    return None


def _shutdown_timeout(worker: Any) -> float:
    # leave gunicorn's master a margin before it sends SIGKILL at graceful_timeout
    return max(1.0, float(worker.cfg.graceful_timeout) - 2.0)


def worker_started(worker: Any) -> None:
    """``post_worker_init``: start this worker's broker before it serves its first request, so the
    heartbeat, the stats loop and the config watcher run even on a worker nobody connected to yet."""
    application = _application(worker)
    if application is None or application.worker_bound:
        return
    application.worker_bound = True
    port = _listening_port(worker)
    if port is not None:
        application.bind_port(port)
    settings = application.settings
    if settings.node_name and worker.cfg.workers > 1:
        # one name shared by several workers would merge their connection registries: keep them apart
        application.settings = settings.replace(node_name=f"{settings.node_name}:{os.getpid()}")
        application.broker.settings = application.settings
    try:
        application.start()
    except Exception as exc:
        log.error("worker %d cannot start the broker: %s", os.getpid(), exc)
        sys.exit(WORKER_BOOT_ERROR)
    gevent.spawn(_shutdown_when_told, worker, application)


def _shutdown_when_told(worker: Any, application: Any) -> None:
    while worker.alive:
        gevent.sleep(0.1)
    log.info("worker %d is stopping", os.getpid())
    application.shutdown(_shutdown_timeout(worker))


def worker_exiting(worker: Any) -> None:
    """``worker_exit`` (and the end of the worker's run loop): finish the shutdown before the process
    exits; when it is already under way, wait for it."""
    application = _application(worker)
    if application is not None and application.broker.started:
        application.shutdown(_shutdown_timeout(worker))


def worker_interrupted(worker: Any) -> None:
    """``worker_int`` (SIGINT/SIGQUIT, gunicorn's quick shutdown): close clients and flush, briefly."""
    application = _application(worker)
    if application is not None and application.broker.started:
        application.shutdown(1.0)


def install() -> None:
    """Make gunicorn's stock gevent-websocket worker serve the broker properly: our WebSocket handler
    (the broker answers 403/400 itself and negotiates permessage-deflate and subprotocols) and the
    lifecycle above around its run loop."""
    try:
        from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
    except ImportError:  # pragma: no cover - gunicorn is not installed
        return
    from .websocket import CobraWebSocketHandler

    GeventWebSocketWorker.wsgi_handler = CobraWebSocketHandler
    stock_run = GeventWebSocketWorker.run
    if getattr(stock_run, "cobra_lifecycle", False):
        return

    def run(worker: Any) -> None:
        worker_started(worker)
        try:
            stock_run(worker)
        finally:
            worker_exiting(worker)

    run.cobra_lifecycle = True  # type: ignore[attr-defined]
    GeventWebSocketWorker.run = run  # type: ignore[method-assign]
