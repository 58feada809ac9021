"""gunicorn settings for the broker: ``REDIS_URL=redis://... gunicorn -c gunicorn.conf.py wsgi:application``.

gunicorn also reads this file by default when started from this folder. Command-line flags override it
(``-w 4 -b 0.0.0.0:80``). The broker's own knobs stay in the environment (``COBRA_*``, ``REDIS_URL``;
``python -m app settings`` lists them); ``COBRA_HOST``/``COBRA_PORT`` give the default bind address.
"""

from __future__ import annotations

import os

from app.logs import gunicorn_logconfig
from app.settings import Settings

_settings = Settings.from_env()

# Every worker is a complete broker (WebSocket edge + engine + cluster member): gevent gives each one
# thousands of concurrent connections, processes give it more cores. Our worker class is gevent-websocket's
# with the broker's WebSocket handler and lifecycle: started after the fork (never in the master, even with
# --preload), stopped gracefully when told (app/gunicorn_worker.py). WEB_CONCURRENCY is gunicorn's own
# convention for the worker count; by default one worker per core.
worker_class = "app.gunicorn_worker.CobraWorker"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
worker_connections = 10000  # concurrent connections per worker (an idle one costs ~20 KB)
bind = [f"{_settings.host}:{_settings.port}"]
backlog = 2048

# A worker's run loop reports to the master every second even while serving thousands of clients, so the
# heartbeat timeout can stay short; graceful_timeout must cover the broker's shutdown (flush accepted
# publishes, close every client with 1001 and wait up to 4 s for its close frame).
timeout = 30
graceful_timeout = 30
keepalive = 5  # seconds an idle HTTP keep-alive connection (admin panel, probes) is kept

# Long-lived WebSockets make max_requests meaningless (a worker restart drops its clients): leave it off.
max_requests = 0

# One format for gunicorn's messages and the broker's (COBRA_LOG_JSON=1 for JSON lines); access lines only
# with COBRA_ACCESS_LOG=1, written by the broker's handler (gunicorn's own access log stays off).
logconfig_dict = gunicorn_logconfig(_settings)
loglevel = _settings.log_level.lower()
