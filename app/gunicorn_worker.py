"""The gunicorn worker of the broker: ``gunicorn -k app.gunicorn_worker.CobraWorker ... wsgi:application``.

gevent-websocket's worker, with two differences. Its handler is ours (:class:`CobraWebSocketHandler`: the
broker answers 403/400/429 before the upgrade and negotiates permessage-deflate and subprotocols). And it runs
the broker's lifecycle around its run loop:

- **start, after the fork**, before the first request (never in the master, even with ``--preload``), so the
  heartbeat, the stats loop and the config watcher run on a worker nobody connected to yet; the broker is
  named after the port gunicorn really listens on. A broker that cannot start (Redis unreachable for the whole
  wait) exits with gunicorn's boot-error code: the master halts instead of respawning workers in a loop.
- **graceful stop**: on SIGTERM gunicorn's gevent worker only clears ``alive``; its run loop then stops
  accepting and waits up to ``graceful_timeout`` for open requests to end. A WebSocket never ends by
  itself, so a greenlet watches the flag and runs :meth:`Broker.shutdown` (flush accepted publishes, close
  clients with 1001, leave the cluster) as soon as it drops; the process exits only once that is over.
- **quick stop** (SIGINT/SIGQUIT): clients closed and publishes flushed within a second, then out.

``gunicorn.conf.py`` names this class; the stock ``GeventWebSocketWorker`` also serves ``wsgi:application``
(see :mod:`app.websocket.stock`), without this lifecycle.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from .websocket import CobraWebSocketHandler

if TYPE_CHECKING:
    from .server import CobraApplication

log = logging.getLogger(__name__)

# How often the stop watcher looks at gunicorn's ``alive`` flag (set from its SIGTERM handler).
ALIVE_CHECK_INTERVAL = 0.1
QUICK_SHUTDOWN_TIMEOUT = 1.0


def cobra_application(wsgi: Any) -> CobraApplication | None:
    """The broker's application inside what ``wsgi.py`` exposes (it may wrap it, see StockUpgrades)."""
    # imported here, in the worker: gunicorn's master imports this module (for the class) before any
    # fork, and the broker's modules are best imported after gevent has patched the worker
    from .server import CobraApplication

    while wsgi is not None and not isinstance(wsgi, CobraApplication):
        wsgi = getattr(wsgi, "application", None)
    return wsgi


def listening_port(sockets: Any) -> int | None:
    """The TCP port of the first listening socket that has one (a Unix socket has none)."""
    for sock in sockets:
        try:
            address = sock.getsockname()
        except OSError:
            continue
        if isinstance(address, tuple):
            return int(address[1])
    return None


class CobraWorker(GeventWebSocketWorker):
    wsgi_handler = CobraWebSocketHandler

    application: CobraApplication | None = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.application = cobra_application(self.wsgi)
        if self.application is not None:
            # our handler upgrades through the application itself: serve it without any wrapper
            self.wsgi = self.application

    def run(self) -> None:
        if self.application is None:  # some other WSGI app: nothing of ours to run around it
            super().run()
            return
        self._start_broker(self.application)
        try:
            super().run()
        finally:
            self._finish_shutdown()

    def _start_broker(self, application: CobraApplication) -> None:
        port = listening_port(self.sockets)
        if port is not None:
            application.bind_port(port)
        settings = application.settings
        if settings.node_name and self.cfg.workers > 1:
            # one name shared by several workers would merge their connection registries: keep them apart
            application.settings = settings.replace(node_name=f"{settings.node_name}:{os.getpid()}")
            application.broker.settings = application.settings
        try:
            application.start()
        except Exception as exc:
            log.error("worker %d cannot start the broker: %s", os.getpid(), exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        gevent.spawn(self._shutdown_when_told, application)

    def _shutdown_timeout(self) -> float:
        # leave gunicorn's master a margin before it sends SIGKILL at graceful_timeout
        return max(1.0, float(self.cfg.graceful_timeout) - 2.0)

    def _shutdown_when_told(self, application: CobraApplication) -> None:
        while self.alive:
            gevent.sleep(ALIVE_CHECK_INTERVAL)
        log.info("worker %d is stopping", os.getpid())
        application.shutdown(self._shutdown_timeout())

    def _finish_shutdown(self) -> None:
        """The run loop is over: finish the shutdown before the process exits (or wait for it)."""
        application = self.application
        if application is not None and application.broker.started:
            application.shutdown(self._shutdown_timeout())

    def handle_quit(self, sig: int, frame: Any) -> None:
        # a signal handler: the blocking part goes to a greenlet, as gunicorn's gevent worker does
        gevent.spawn(self._quit, sig, frame)

    def _quit(self, sig: int, frame: Any) -> None:
        self.alive = False
        application = self.application
        if application is not None and application.broker.started:
            application.shutdown(QUICK_SHUTDOWN_TIMEOUT)
        Worker.handle_quit(self, sig, frame)  # gunicorn's worker_int hook, then exit
