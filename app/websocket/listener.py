"""The listening side: gevent's WSGI server (and gunicorn's) with accept that backs off when the process has
no file descriptor left.

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


class CobraWSGIServer(AcceptBackoff, WSGIServer):
    """gevent's WSGI server with :class:`AcceptBackoff` and a backlog as long as the kernel allows
    (``python -m app run``)."""

    backlog = LISTEN_BACKLOG
