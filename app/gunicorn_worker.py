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

``gunicorn.conf.py`` names this class. The stock ``GeventWebSocketWorker`` also serves ``wsgi:application``
(see :mod:`app.websocket.stock`) with the same start and graceful stop (:func:`adopt_stock_worker`), but
without our handler: no permessage-deflate, and refusals after the 101 as close frames.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker
from gunicorn.workers.ggevent import PyWSGIServer

from .websocket import CobraWebSocketHandler
from .websocket.listener import AcceptBackoff, ShallowHandle

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


class BrokerLifecycle:
    """The broker's life inside one gunicorn worker: started after the fork, stopped gracefully when
    gunicorn clears the worker's ``alive`` flag, and finished before the process exits."""

    def __init__(self, worker: Any, application: CobraApplication) -> None:
        self.worker = worker
        self.application = application

    def start(self) -> None:
        application, worker = self.application, self.worker
        port = listening_port(worker.sockets)
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
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        gevent.spawn(self.watch)

    def shutdown_timeout(self) -> float:
        # leave gunicorn's master a margin before it sends SIGKILL at graceful_timeout
        return max(1.0, float(self.worker.cfg.graceful_timeout) - 2.0)

    def watch(self) -> None:
        """Until gunicorn clears ``alive`` (its SIGTERM handler), then the graceful shutdown."""
        while self.worker.alive:
            gevent.sleep(ALIVE_CHECK_INTERVAL)
        log.info("worker %d is stopping", os.getpid())
        self.application.shutdown(self.shutdown_timeout())

    def finish(self) -> None:
        """The run loop is over: finish the shutdown before the process exits (or wait for it)."""
        if self.application.broker.started:
            self.application.shutdown(self.shutdown_timeout())


class CobraPyWSGIServer(ShallowHandle, AcceptBackoff, PyWSGIServer):
    """gunicorn's gevent WSGI server, backing off when accept runs out of file descriptors (and with
    :class:`ShallowHandle`'s smaller greenlet stacks)."""


class CobraWorker(GeventWebSocketWorker):
    wsgi_handler = CobraWebSocketHandler
    server_class = CobraPyWSGIServer

    application: CobraApplication | None = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.application = cobra_application(self.wsgi)
        if self.application is not None:
            # our handler upgrades through the application itself: serve it without any wrapper
            self.wsgi = self.application
            # gunicorn's pywsgi server does not apply its own ``keepalive``: our handler does
            self.application.edge.keepalive = float(self.cfg.keepalive)

    def run(self) -> None:
        if self.application is None:  # some other WSGI app: nothing of ours to run around it
            super().run()
            return
        lifecycle = BrokerLifecycle(self, self.application)
        lifecycle.start()
        try:
            super().run()
        finally:
            lifecycle.finish()

    def handle_quit(self, sig: int, frame: Any) -> None:
        # a signal handler: the blocking part goes to a greenlet, as gunicorn's gevent worker does
        gevent.spawn(self._quit, sig, frame)

    def _quit(self, sig: int, frame: Any) -> None:
        self.alive = False
        application = self.application
        if application is not None and application.broker.started:
            application.shutdown(QUICK_SHUTDOWN_TIMEOUT)
        Worker.handle_quit(self, sig, frame)  # gunicorn's worker_int hook, then exit


def adopt_stock_worker(application: CobraApplication) -> bool:
    """Give the broker its lifecycle under a gunicorn worker that is not ours (the stock
    ``GeventWebSocketWorker`` started without our config file), without patching any class.

    gunicorn loads the application in the worker after installing the worker's signal handlers, so the
    SIGTERM handler is the bound ``handle_exit`` of the worker now loading us: that is how we find it. The
    broker then starts from a greenlet as soon as the worker's loop runs (before any client needs it), stops
    gracefully when ``alive`` drops, and the process waits for that at exit. In the master (``--preload``) or
    outside gunicorn there is no worker to find: the broker starts on the first request, as before.
    """
    handler = signal.getsignal(signal.SIGTERM)
    worker = getattr(handler, "__self__", None)
    if not isinstance(worker, Worker) or isinstance(worker, CobraWorker) or _adopted.get(os.getpid()):
        return False
    _adopted[os.getpid()] = True
    lifecycle = BrokerLifecycle(worker, application)
    if application.broker.started:  # adopted at a first request: only the stop is left to arrange
        gevent.spawn(lifecycle.watch)
    else:
        gevent.spawn(lifecycle.start)
    atexit.register(lifecycle.finish)
    return True


_adopted: dict[int, bool] = {}  # by pid: a --preload master's flag must not carry over to its workers
