"""The WSGI entry point for production: ``gunicorn ... wsgi:application``.

    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -c gunicorn.conf.py wsgi:application
    REDIS_URL=... gunicorn -k app.gunicorn_worker.CobraWorker -w 2 --worker-connections 10000 \\
        -b 127.0.0.1:8765 wsgi:application

WebSocket upgrades go to the broker, ``/admin/`` to the admin panel, the rest to the plain HTTP paths of
PROTOCOL §1 plus ``/ready/`` and ``/metrics``. Every worker process is a full broker; they meet in Redis
(see app/cluster.py). Importing this module starts nothing (``--preload`` imports it in the master): each
worker starts its own broker after the fork (app/gunicorn_worker.py).

gunicorn's stock ``-k geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` serves this too, without any
patching: its handler upgrades by itself, and :class:`StockUpgrades` runs the upgraded socket with the
broker's framing, and the broker gets the same start after the fork and graceful 1001 shutdown
(``adopt_stock_worker``); only permessage-deflate and HTTP refusals before the 101 need our worker class.
"""

from __future__ import annotations

import logging

from app.gunicorn_worker import adopt_stock_worker
from app.logs import setup_logging
from app.server import create_application
from app.settings import Settings
from app.websocket import StockUpgrades

settings = Settings.from_env()
if not settings.redis_url:
    # An exception (not SystemExit) while loading the app makes gunicorn stop with this message rather
    # than respawn failing workers forever.
    raise RuntimeError("wsgi.py needs REDIS_URL: worker processes share one Redis (no embedded Redis here)")

if not logging.getLogger().handlers:  # gunicorn.conf.py configures logging; without it, do it here
    setup_logging(settings)

broker_application = create_application(settings, settings.redis_url)
# Under the stock GeventWebSocketWorker (no gunicorn.conf.py): the same start-up and graceful stop as ours.
adopt_stock_worker(broker_application)
# CobraWorker serves the application inside; the wrapper is for gevent-websocket's own handler.
application = StockUpgrades(
    broker_application, on_first_request=lambda: adopt_stock_worker(broker_application)
)
