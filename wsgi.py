"""The WSGI entry point for production: ``gunicorn ... wsgi:application``.

    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -c gunicorn.conf.py wsgi:application

WebSocket upgrades go to the broker, ``/admin/`` to the admin panel, the rest to the plain HTTP paths of
PROTOCOL §1. Every worker process is a full broker; they meet in Redis (see app/cluster.py).
"""

from __future__ import annotations

from app.server import create_application
from app.settings import Settings
from app.websocket import CobraWebSocketHandler

try:
    # gunicorn's stock gevent-websocket worker upgrades every request before the application sees it; give it
    # our handler, which lets the broker answer 403/400 and negotiate permessage-deflate and subprotocols.
    from geventwebsocket.gunicorn.workers import GeventWebSocketWorker

    GeventWebSocketWorker.wsgi_handler = CobraWebSocketHandler
except ImportError:  # pragma: no cover - gunicorn is not installed
    pass

settings = Settings.from_env()
if not settings.redis_url:
    raise SystemExit("wsgi.py needs REDIS_URL: worker processes share one Redis (no embedded Redis here)")

application = create_application(settings, settings.redis_url)
