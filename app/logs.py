"""Logging set-up: one line per event, as text or JSON (``COBRA_LOG_JSON``), for ``python -m app run`` and
for gunicorn (master and workers: :func:`gunicorn_logconfig`).

Secrets are never passed to a logger; as a second line of defence, the password part of any URL that
reaches a log line (``redis://:pw@host``) is masked. A JSON line carries ``connection_id`` when the event
is about one connection: the caller passes it as a field, ``extra={"connection_id": conn.id}`` (the text
still reads ``connection <id>: ...`` for plain logs; the message is never parsed), and ``pid`` so the
workers of one gunicorn master can be told apart.

Control characters in a text line are written as ``\\xNN`` escapes: what a client sends (a TLS hello on the
plain port, a request line with a newline) can neither write raw bytes into the log nor forge a line. Access
lines (logger ``app.access``, one per request) are off unless ``COBRA_ACCESS_LOG`` is set.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

from .settings import Settings

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "app.access"
# gevent-websocket's own handler (the stock gunicorn worker) writes its access lines here, at INFO
STOCK_ACCESS_LOGGER = "geventwebsocket.handler"

_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]+@")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# attributes every LogRecord has; anything else was passed with extra={...} and goes into the JSON line
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


def printable(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) as a ``\\xNN`` escape."""
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # the message only: a traceback appended after it keeps its line breaks
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": message,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                plain = isinstance(value, (str, int, float, bool)) or value is None
                entry[key] = value if plain else str(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_json else TextFormatter()


def access_log_levels(settings: Settings) -> dict[str, str]:
    """Levels of the loggers that write one line per request: INFO only when ``access_log`` is set."""
    level = "INFO" if settings.access_log else "WARNING"
    return {ACCESS_LOGGER: level, STOCK_ACCESS_LOGGER: level}


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name, level in access_log_levels(settings).items():
        logging.getLogger(name).setLevel(level)


def gunicorn_logconfig(settings: Settings) -> dict[str, Any]:
    """``logconfig_dict`` for gunicorn: its own messages (``gunicorn.error``) and the broker's go through
    one handler and one format. gunicorn's own access log stays off: the broker's WebSocket handler writes
    its own lines (``app.access``, with ``access_log``), the same as under ``python -m app run``."""
    chosen = "app.logs.JsonFormatter" if settings.log_json else "app.logs.TextFormatter"
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cobra": {"()": chosen}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "cobra", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            **{
                name: {"level": level, "handlers": [], "propagate": True}
                for name, level in access_log_levels(settings).items()
            },
        },
    }
