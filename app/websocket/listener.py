"""The listening side: gevent's WSGI server (and gunicorn's) with accept that backs off when the process has
no file descriptor left, and connection greenlets that start one C frame shallower (:class:`ShallowHandle`).

With every descriptor taken, ``accept`` fails with EMFILE (or ENFILE, system-wide) while the connection
stays in the backlog, so the listening socket stays readable: retried at once it fails again, a busy loop.
gevent backs off by itself but prints a traceback per failure. Here the failure is noted for readiness
(:meth:`app.edge_guard.EdgeGuard.out_of_descriptors`), accepting pauses for a delay that doubles from
0.1 s to 1 s, and one warning is logged per episode.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from gevent.pywsgi import WSGIServer

log = logging.getLogger(__name__)

OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
# listen(2)'s backlog: the kernel caps it at net.core.somaxconn (README, Deployment). gevent's default of
# 128 overflowed in a connect storm (256 handshakes at once): dropped SYNs are retried after 1 s, 3 s...
LISTEN_BACKLOG = 65535
FIRST_BACKOFF = 0.1
LAST_BACKOFF = 1.0


class AcceptBackoff:
    """Mixed into a gevent ``StreamServer`` subclass whose application may have an ``edge``."""

    _fd_backoff = 0.0

    def do_read(self) -> Any:
        try:
            accepted = super().do_read()  # type: ignore[misc]
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS:
                raise
            self._out_of_descriptors(exc)
            return None
        self._fd_backoff = 0.0
        return accepted

    def _out_of_descriptors(self, exc: OSError) -> None:
        server: Any = self
        edge = getattr(getattr(server, "application", None), "edge", None)
        if edge is not None:
            edge.out_of_descriptors()
        if not self._fd_backoff:
            log.warning("accept: %s; pausing accepts until descriptors free up", exc.strerror or exc)
        self._fd_backoff = min(LAST_BACKOFF, self._fd_backoff * 2 or FIRST_BACKOFF)
        server.stop_accepting()
        server._timer = server.loop.timer(self._fd_backoff)
        server._timer.start(server._start_accepting_if_started)


def _handle_and_close(handle: Any, close: Any, sock: Any, address: Any) -> Any:
    try:
        return handle(sock, address)
    finally:
        close(sock, address)


class ShallowHandle:
    """Mixed into a gevent ``StreamServer`` subclass: each accepted socket's greenlet calls the handler
    with plain arguments. gevent's own wrapper calls ``handle(*args)``, which CPython 3.11 runs through C in
    a new evaluation loop; that C frame then stays in the saved stack of every connection's greenlet for
    the connection's life (~470 bytes each, measured with tracemalloc in the broker)."""

    def do_handle(self, *args: Any) -> Any:
        server: Any = self
        spawn = server._spawn
        if spawn is None or len(args) != 2:
            return super().do_handle(*args)  # type: ignore[misc]
        close = server.do_close
        try:
            spawn(_handle_and_close, server._handle, close, *args)
        except BaseException:
            close(*args)
            raise
        return None


class CobraWSGIServer(ShallowHandle, AcceptBackoff, WSGIServer):
    """gevent's WSGI server with :class:`ShallowHandle`, :class:`AcceptBackoff` and a backlog as long as
    the kernel allows (``python -m app run``)."""

    backlog = LISTEN_BACKLOG
