"""The admin panel: a Flask application factory, mounted by the broker under ``/admin/``.

One blueprint per concern (``auth``, ``apps``, ``roles``, ``shards``, ``live``, ``tail``, ``audit``,
``transfer``, ``accounts``), templates foldered per blueprint under the project's ``templates/``, one
stylesheet and small scripts under ``static/``. Everything the panel stores goes through
:mod:`app.config_store`; the panel's own settings live in ``app.config`` (see ``DEFAULTS``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from flask import Flask, make_response, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import MethodNotAllowed

from app import __version__
from app.live_tail import LiveTail
from app.settings import Settings

from .context import EXTENSION, Panel

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    "ADMIN_PREFIX": "/admin",
    # Failed logins of one user name from one address before each further attempt waits: BASE_DELAY,
    # doubling per failure, at most MAX_DELAY (see admin/auth.py). Other addresses are not affected.
    "ADMIN_LOGIN_MAX_FAILURES_PER_USER": 5,
    "ADMIN_LOGIN_BASE_DELAY": 30.0,
    "ADMIN_LOGIN_MAX_DELAY": 15 * 60.0,
    # Login attempts one address may make per window (a success gives its attempt back).
    "ADMIN_LOGIN_MAX_FAILURES_PER_IP": 20,
    "ADMIN_LOGIN_WINDOW": 15 * 60,
    "ADMIN_TAIL_MAX_SECONDS": 10 * 60,
    "ADMIN_TAIL_MAX_MESSAGES": 1000,
    "ADMIN_TAIL_KEEPALIVE": 5.0,
    "ADMIN_SHARD_TIMEOUT": 2.0,
    "MAX_CONTENT_LENGTH": 2 << 20,  # the largest upload (an apps.yaml) in bytes
    "SESSION_COOKIE_NAME": "cobra_admin",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session (which expires by itself)
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)

csrf = CSRFProtect()


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with ``Secure`` set per request when not forced either way."""

    def get_cookie_secure(self, app: Flask) -> bool:
        forced = app.config["ADMIN_SECURE_COOKIES"]
        return bool(request.is_secure) if forced is None else bool(forced)


class _Mount:
    """WSGI wrapper: moves the mount prefix from PATH_INFO to SCRIPT_NAME unless whoever mounted the panel
    did (the broker, a proxy), so routes are written without it and ``url_for`` generates ``/admin/...``;
    and fetches the shared SECRET_KEY before the first request (the factory itself touches no Redis:
    gunicorn may call it in the master, before forking)."""

    def __init__(self, flask_app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.flask_app = flask_app
        self.wsgi_app = wsgi_app
        self.prefix = flask_app.config["ADMIN_PREFIX"].rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        script_name = environ.get("SCRIPT_NAME", "")
        if script_name.endswith(self.prefix):
            # Mounted: the broker's DispatcherMiddleware (or a front proxy) already moved the prefix.
            environ["PATH_INFO"] = path or "/"
        elif self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            environ["SCRIPT_NAME"] = script_name + self.prefix
            environ["PATH_INFO"] = path[len(self.prefix) :] or "/"
        if not self.flask_app.secret_key:
            try:
                self.flask_app.secret_key = self.flask_app.extensions[EXTENSION].store.panel_secret_key()
            except redis.RedisError:
                body = b"The admin panel cannot reach its config store (Redis); try again shortly.\n"
                start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
                return [body]
        return self.wsgi_app(environ, start_response)


def create_admin_app(
    settings: Settings,
    redis_url: str,
    test_config: Mapping[str, Any] | None = None,
    *,
    live_tail: LiveTail | None = None,
) -> Flask:
    """The panel as a WSGI application serving ``<ADMIN_PREFIX>/...`` (default ``/admin/``). ``live_tail``
    is the broker's door for the tail page (without it the page cannot stream)."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        static_url_path="/static",
    )
    app.config.update(DEFAULTS)
    # Idle timeout: the session cookie's signature is checked against this age on every request.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=settings.admin_session_lifetime)
    # Absolute limit from login, however active the session.
    app.config["ADMIN_SESSION_MAX_AGE"] = settings.admin_session_max_age
    # None = Secure cookies exactly when the request came over https; True/False force it.
    app.config["ADMIN_SECURE_COOKIES"] = _secure_cookies(settings.admin_secure_cookies)
    app.config["SECRET_KEY"] = None
    if test_config:
        app.config.update(test_config)
    app.extensions[EXTENSION] = Panel(settings, redis_url, live_tail)
    app.session_interface = _SessionInterface()
    app.before_request(_refuse_nameless_fields)  # before the CSRF check, which trips over such a field
    csrf.init_app(app)

    from . import accounts, apps, audit, auth, live, roles, shards, tail, transfer

    auth.init_app(app)
    for module in (apps, roles, shards, live, tail, audit, transfer, accounts):
        app.register_blueprint(module.bp)
    _install_page_helpers(app)
    app.wsgi_app = _Mount(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


def _refuse_nameless_fields() -> Any:
    """A multipart part without a name comes out of werkzeug as a field named None, on which Flask-WTF's
    CSRF check (``key.endswith``) and wtforms raise: such a body is refused as malformed."""
    if request.method == "POST" and (None in request.form or None in request.files):
        message = "The form sent a field without a name."
        return render_template("error.html", title="Malformed form", message=message), 400
    return None


def _secure_cookies(value: str) -> bool | None:
    """The Secure flag of the session cookie: forced on or off, or None to follow the request's scheme."""
    lowered = value.strip().lower()
    if lowered in ("", "auto"):
        return None
    return lowered in ("1", "true", "yes", "on")


def _install_page_helpers(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Any) -> Any:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        # Which process answered, as on the broker's own 101s: under gunicorn, which worker.
        headers["X-Cobra-Node"] = app.extensions[EXTENSION].settings.node
        if request.endpoint != "static":
            # Pages show secrets and connection lists: never keep them in a browser or proxy cache.
            headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> Any:
        return render_template("error.html", title="Form expired", message=error.description), 400

    @app.errorhandler(405)
    def method_not_allowed(error: MethodNotAllowed) -> Any:
        # What is left of 405s once every form's address also answers GET: a button's address (log out,
        # export, disconnect) typed into the address bar. A page of the panel, not Werkzeug's bare one.
        message = "This address only takes a form's button; there is no page to show here."
        response = make_response(render_template("error.html", title="Not a page", message=message), 405)
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
        return response

    @app.errorhandler(404)
    def not_found(error: Any) -> Any:
        return render_template("error.html", title="Not found", message="There is no such page."), 404

    @app.errorhandler(redis.RedisError)
    def redis_down(error: redis.RedisError) -> Any:
        app.logger.warning("config store error: %s", error)
        message = "The config store (Redis) did not answer. Nothing was changed; try again shortly."
        return render_template("error.html", title="Config store unreachable", message=message), 503

    @app.template_filter("datetime")
    def format_datetime(value: float | str | None) -> str:
        if value in (None, "", 0):
            return "—"
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @app.template_filter("ago")
    def format_ago(value: float | None) -> str:
        if not value:
            return "—"
        seconds = max(0, int(time.time() - float(value)))
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{seconds // size} {unit} ago"
        return f"{seconds} s ago"

    @app.template_filter("bytes")
    def format_bytes(value: float | None) -> str:
        if value is None:
            return "—"
        size = float(value)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if size < 1024 or unit == "GiB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024
        return f"{size:.1f} GiB"

    @app.context_processor
    def page_globals() -> dict[str, Any]:
        return {"version": __version__}
