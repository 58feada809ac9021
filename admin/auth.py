"""Logging in and out, the "every page needs a user" rule, session expiry and login throttling.

Sessions live on the server: the signed cookie carries a session id that must still be open in Redis on
every request (the user loader checks it), so logging out ends the session everywhere, copies of the
cookie included.

Throttling reserves each attempt in Redis *before* its password is checked, in one Lua script (see
``ConfigStore.begin_login_attempt``), so a burst of parallel guesses counts one by one across every greenlet,
worker and process. Attempts are counted per (user name, address), with a delay that doubles per failure
once a few have failed, and per address; a stranger failing at ``admin`` locks out only the stranger's own
address. Refused attempts never reach the password check, which also keeps password hashing, the expensive
part, out of an attacker's reach.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user

from .context import audit, client_ip, store
from .forms import EmptyForm, LoginForm
from .users import AdminUser, check_credentials, load_user

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
PUBLIC_ENDPOINTS = {"auth.login", "static"}


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in."
    login_manager.login_message_category = "info"
    app.register_blueprint(bp)
    app.before_request(_require_user)


@login_manager.user_loader
def _load_user(user_id: str) -> AdminUser | None:
    """The user of this request: the cookie's user id must name a user with its current session epoch
    (a password change ends older sessions) and its session id must still be open (logout ends it)."""
    user = load_user(store(), user_id)
    if user is None or store().admin_session_user(session.get("sid", "")) != user.name:
        return None
    return user


def start_session(user: AdminUser, logged_in_at: float | None = None) -> None:
    """A fresh session for ``user``: nothing from before it (a planted or stale session) survives, and it
    gets a new server-side id."""
    session.clear()
    session["sid"] = store().open_admin_session(user.name, current_app.config["ADMIN_SESSION_MAX_AGE"])
    login_user(user)
    session.permanent = True
    session["logged_in_at"] = time.time() if logged_in_at is None else logged_in_at


@login_manager.unauthorized_handler
def _unauthorized() -> Any:
    if _wants_json():
        return jsonify(error="not logged in"), 401
    flash(login_manager.login_message, "info")
    back = request.script_root + request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.login", next=back))


def _wants_json() -> bool:
    """Scripts (fetch with ``Accept: application/json``, EventSource) get a 401 they can act on instead of
    the login page's HTML."""
    return request.accept_mimetypes.best in ("application/json", "text/event-stream")


def _require_user() -> Any:
    """Every endpoint but login and static files needs a logged-in user whose session has not expired.
    One rule at the application level, so a new view cannot forget it."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    logged_in_at = session.get("logged_in_at", 0)
    if time.time() - logged_in_at > current_app.config["ADMIN_SESSION_MAX_AGE"]:
        store().close_admin_session(session.get("sid", ""))
        logout_user()
        session.clear()
        flash("Your session expired; please log in again.", "info")
        return login_manager.unauthorized()
    return None


def throttle_keys(name: str, address: str) -> tuple[str, str]:
    """(address key, (user, address) key) of the login throttle."""
    # The user name is hashed: it is attacker-chosen text and must not shape Redis key names.
    digest = hashlib.sha256(name.strip().lower().encode()).hexdigest()[:32]
    return f"ip:{address}", f"pair:{digest}:{address}"


def _begin_attempt(keys: tuple[str, str]) -> int:
    """Reserve this attempt; the seconds to wait when it is refused, else 0."""
    config = current_app.config
    return store().begin_login_attempt(
        *keys,
        address_limit=config["ADMIN_LOGIN_MAX_FAILURES_PER_IP"],
        window_seconds=config["ADMIN_LOGIN_WINDOW"],
        free_failures=config["ADMIN_LOGIN_MAX_FAILURES_PER_USER"],
        base_delay=config["ADMIN_LOGIN_BASE_DELAY"],
        max_delay=config["ADMIN_LOGIN_MAX_DELAY"],
    )


def _safe_next(target: str | None) -> str:
    """Only a path inside the panel: anything else would make the login page an open redirect. A control
    character or a space is refused too: CR/LF would split the Location header (werkzeug raises, a 500) and
    browsers drop tabs and newlines from URLs, so what they follow is not what was checked."""
    default = url_for("live.dashboard")
    if not target or any(char <= " " or char == "\x7f" for char in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or not target.startswith(request.script_root + "/"):
        return default
    return target


def _known_name(name: str) -> str:
    """The name typed at a failed login, for the audit log, only if it is a user's: people do type their
    password into the user name field, and that must not end up in a log."""
    return name if name and len(name) <= 64 and store().admin_user(name) else "(unknown user)"


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        name = form.username.data or ""
        keys = throttle_keys(name, client_ip())
        # Counted before the password is checked: parallel guesses cannot all slip past one check.
        wait = _begin_attempt(keys)
        if wait:
            minutes = max(1, (wait + 59) // 60)
            form.form_errors.append(
                f"Too many failed logins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            )
            audit("login.throttled", user=_known_name(name))
            response = make_response(render_template("auth/login.html", form=form), 429)
            response.headers["Retry-After"] = str(wait)
            return response
        user = check_credentials(store(), name, form.password.data or "")
        if user is None:
            audit("login.failed", user=_known_name(name))
            form.form_errors.append("Wrong user name or password.")
            status = 401
        else:
            store().end_login_attempt(*keys)
            start_session(user)
            audit("login")
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    form = EmptyForm()
    if form.validate_on_submit():
        audit("logout")
        store().close_admin_session(session.get("sid", ""))
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
