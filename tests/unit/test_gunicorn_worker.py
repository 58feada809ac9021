"""What our gunicorn worker finds in ``wsgi.py``'s application, and the port it names its broker after."""

from __future__ import annotations

import socket

from app.gunicorn_worker import CobraWorker, cobra_application, listening_port
from app.server import CobraApplication
from app.settings import Settings
from app.websocket import CobraWebSocketHandler, StockUpgrades


def test_the_worker_serves_with_the_brokers_handler():
    assert CobraWorker.wsgi_handler is CobraWebSocketHandler


def test_the_broker_is_found_inside_the_stock_upgrade_wrapper():
    application = CobraApplication(Settings(), "redis://127.0.0.1:1/0")  # connects to nothing until started
    assert cobra_application(StockUpgrades(application)) is application
    assert cobra_application(application) is application


def test_another_wsgi_application_has_no_broker():
    assert cobra_application(lambda environ, start_response: []) is None


def test_the_port_is_the_one_really_listened_on(tmp_path):
    with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp, socket.socket() as closed:
        unix.bind(str(tmp_path / "gunicorn.sock"))  # gunicorn can bind one: it has no port
        tcp.bind(("127.0.0.1", 0))
        closed.close()  # getsockname fails: skipped
        assert listening_port([unix, closed, tcp]) == tcp.getsockname()[1]
    assert listening_port([]) is None
