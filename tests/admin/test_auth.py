"""Logging in and out: every page needs a user, sessions expire and are renewed at login, failed logins
are throttled per user name and per IP address across every process sharing the config store."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import pytest

from admin.users import load_user, set_password

from .conftest import PASSWORD, new_panel, unique

ROUTE_VALUES = {"key": "some-app", "name": "some-role", "connection_id": "abc123"}


def all_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = rule.build({k: ROUTE_VALUES.get(k, "x") for k in rule.arguments})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url


def test_the_login_page_is_served_under_admin(client):
    page = client.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # the form posts where a browser would send it: its action (none = the page itself) under /admin/
    [form] = re.findall(r"<form\b[^>]*>", html)
    action = re.search(r'action="([^"]*)"', form)
    assert (
        urlsplit(urljoin("http://localhost/admin/login", action[1] if action else "")).path == "/admin/login"
    )
    # every link of the page that names a path stays under the mount point
    paths = [url for url in re.findall(r'(?:href|src)="([^"]*)"', html) if url.startswith("/")]
    assert paths and all(url.startswith("/admin/") for url in paths), paths
    assert 'href="/admin/static/admin.css' in html
    assert client.get("/static/admin.css").status_code == 200


def test_the_panel_root_redirects_anonymous_users_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_every_route_but_login_needs_a_user(client, panel_app):
    checked = 0
    for method, url in all_routes(panel_app):
        if url == "/login":
            continue
        response = client.client.open("/admin" + url, method=method, data={"csrf_token": client.csrf_token()})
        assert response.status_code == 302, f"{method} {url}: {response.status_code}"
        assert response.headers["Location"].startswith("/admin/login"), f"{method} {url}"
        checked += 1
    assert checked >= 25


def test_scripts_get_a_401_instead_of_the_login_page(client):
    response = client.get("/live/stats.json", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.get_json() == {"error": "not logged in"}
    assert (
        client.get("/tail/stream?app=x&channel=y", headers={"Accept": "text/event-stream"}).status_code == 401
    )


def test_login_with_the_right_password_opens_the_dashboard(client, admin_user):
    response = client.login(admin_user)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    page = client.get("/")
    assert page.status_code == 200
    assert admin_user in page.get_data(as_text=True)


def test_login_returns_to_the_page_asked_for(client, admin_user):
    asked = client.get("/audit/?app=x")
    login_url = asked.headers["Location"]
    assert login_url == "/admin/login?next=/admin/audit/?app%3Dx"
    response = client.client.post(
        login_url, data={"username": admin_user, "password": PASSWORD, "csrf_token": client.csrf_token()}
    )
    assert response.headers["Location"] == "/admin/audit/?app=x"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/elsewhere", "/admin\\..\\x"]
)
def test_login_never_redirects_outside_the_panel(client, admin_user, target):
    response = client.client.post(
        "/admin/login",
        query_string={"next": target},
        data={"username": admin_user, "password": PASSWORD, "csrf_token": client.csrf_token()},
    )
    assert response.headers["Location"] == "/admin/"


def test_a_wrong_password_is_refused(client, admin_user):
    response = client.login(admin_user, "not the password")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_an_unknown_user_gets_the_same_answer(client):
    response = client.login(unique("nobody"), "whatever password")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)


def test_an_empty_form_is_a_validation_error(client):
    response = client.post("/login", {"username": "", "password": ""})
    assert response.status_code == 200
    assert "This field is required." in response.get_data(as_text=True)


def test_logout_needs_a_post_and_ends_the_session(panel):
    assert panel.get("/logout").status_code == 405
    response = panel.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login"
    assert panel.get("/apps/").status_code == 302


def test_logging_in_starts_a_new_session(client, admin_user):
    """Session fixation: nothing from the anonymous session — its cookie, its CSRF token — survives."""
    token_before = client.csrf_token()
    cookie_before = client.client.get_cookie("cobra_admin").value
    client.login(admin_user)
    cookie_after = client.client.get_cookie("cobra_admin").value
    assert cookie_after != cookie_before
    assert client.csrf_token() != token_before
    # The anonymous cookie, replayed, is still anonymous.
    client.client.set_cookie("cobra_admin", cookie_before)
    assert client.get("/apps/").status_code == 302


def test_the_session_cookie_is_httponly_and_samesite(client, admin_user):
    response = client.login(admin_user)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_the_session_cookie_is_secure_over_https(make_client, admin_user):
    client = make_client(https=True)
    response = client.login(admin_user)
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_pages_are_never_cached_and_carry_security_headers(panel):
    response = panel.get("/apps/")
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_session_ends_after_its_maximum_age(panel):
    with panel.client.session_transaction() as session:
        session["logged_in_at"] = time.time() - 13 * 3600
    response = panel.get("/apps/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert panel.get("/apps/").status_code == 302


def test_an_idle_session_expires(redis_server, make_client, admin_user):
    app = new_panel(redis_server.url, PERMANENT_SESSION_LIFETIME=timedelta(seconds=1))
    client = make_client(app)
    client.login(admin_user)
    assert client.get("/apps/").status_code == 200
    time.sleep(2.5)  # the cookie's signature is older than the lifetime: Flask ignores it
    assert client.get("/apps/").status_code == 302


def test_a_password_reset_logs_the_user_out_everywhere(panel, store, admin_user):
    assert panel.get("/apps/").status_code == 200
    set_password(store, admin_user, "another long password")
    assert panel.get("/apps/").status_code == 302


def test_a_deleted_user_is_logged_out(panel, store, admin_user):
    store.delete_admin_user(admin_user)
    assert panel.get("/apps/").status_code == 302


def test_session_ids_name_an_epoch_and_a_user(store, admin_user):
    record = store.admin_user(admin_user)
    assert load_user(store, f"{record['session_epoch']}:{admin_user}").name == admin_user
    assert load_user(store, f"stale:{admin_user}") is None
    assert load_user(store, "garbage") is None


def test_every_process_shares_one_secret_key_so_sessions_survive_a_worker_switch(
    redis_server, make_client, admin_user
):
    first, second = new_panel(redis_server.url), new_panel(redis_server.url)
    client = make_client(first)
    client.login(admin_user)
    cookie = client.client.get_cookie("cobra_admin").value
    other = make_client(second)
    other.client.set_cookie("cobra_admin", cookie)
    # Same cookie, another "worker" (its own app object, same Redis): still logged in.
    assert other.get("/apps/").status_code == 200
    assert first.secret_key == second.secret_key


# ---------------------------------------------------------------- throttling
@pytest.fixture
def strict_panel(redis_server):
    return new_panel(
        redis_server.url,
        ADMIN_LOGIN_MAX_FAILURES_PER_USER=3,
        ADMIN_LOGIN_MAX_FAILURES_PER_IP=5,
        ADMIN_LOGIN_WINDOW=600,
    )


def test_a_user_name_is_locked_after_repeated_failures(strict_panel, make_client, admin_user):
    client = make_client(strict_panel)
    for _ in range(3):
        assert client.login(admin_user, "wrong password").status_code == 401
    response = client.login(admin_user)  # the right password no longer helps
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)
    # ...from that address only: the lock is on (name, address), so the owner elsewhere still gets in.
    assert make_client(strict_panel).login(admin_user).status_code == 302


def test_the_user_lock_is_shared_by_every_process(strict_panel, redis_server, make_client, admin_user):
    client = make_client(strict_panel, ip="10.250.2.2")
    try:
        for _ in range(3):
            client.login(admin_user, "wrong password")
        other_worker = new_panel(redis_server.url, ADMIN_LOGIN_MAX_FAILURES_PER_USER=3)
        assert make_client(other_worker, ip="10.250.2.2").login(admin_user).status_code == 429
    finally:
        store = strict_panel.extensions["cobra_admin"].store
        store.clear_login_failures(["ip:10.250.2.2"])


def test_an_address_is_locked_after_repeated_failures(strict_panel, make_client, store):
    client = make_client(strict_panel, ip="10.250.1.1")
    try:
        for _ in range(5):
            assert client.login(unique("nobody"), "wrong password").status_code == 401
        someone = unique("user")
        set_password(store, someone, PASSWORD)
        assert client.login(someone).status_code == 429
        assert make_client(strict_panel).login(someone).status_code == 302  # elsewhere: fine
    finally:
        store.clear_login_failures(["ip:10.250.1.1"])


def test_a_success_clears_the_user_failures(strict_panel, make_client, admin_user):
    client = make_client(strict_panel)
    for _ in range(2):
        client.login(admin_user, "wrong password")
    assert client.login(admin_user).status_code == 302
    client.post("/logout")
    for _ in range(2):
        client.login(admin_user, "wrong password")
    assert client.login(admin_user).status_code == 302


def test_throttled_attempts_are_audited_without_the_password(strict_panel, make_client, admin_user, store):
    client = make_client(strict_panel)
    for _ in range(4):
        client.login(admin_user, "wrong password typed")
    entries = [e for _, e in store.audit_entries(200) if e.get("user") == admin_user]
    actions = [e["action"] for e in entries]
    assert actions.count("login.failed") == 3
    assert "login.throttled" in actions
    assert not any("wrong password typed" in str(e) for e in entries)


def test_a_password_typed_as_user_name_is_not_audited(client, store):
    client.login("my-secret-password-typed-here", "x")
    assert not any("my-secret-password-typed-here" in str(e) for _, e in store.audit_entries(200))


def test_session_knobs_come_from_the_settings(redis_server):
    from admin import create_admin_app
    from app.settings import Settings

    env = {
        "COBRA_ADMIN_SESSION_LIFETIME": "120",
        "COBRA_ADMIN_SESSION_MAX_AGE": "3600",
        "COBRA_ADMIN_SECURE_COOKIES": "true",
    }
    app = create_admin_app(Settings.from_env(env), redis_server.url)
    assert app.permanent_session_lifetime == timedelta(seconds=120)
    assert app.config["ADMIN_SESSION_MAX_AGE"] == 3600
    assert app.config["ADMIN_SECURE_COOKIES"] is True
    defaults = create_admin_app(Settings.from_env({}), redis_server.url)
    assert defaults.permanent_session_lifetime == timedelta(hours=1)
    assert defaults.config["ADMIN_SESSION_MAX_AGE"] == 12 * 3600
    assert defaults.config["ADMIN_SECURE_COOKIES"] is None


def test_the_delay_grows_with_each_failure_from_one_address(redis_server, make_client, admin_user):
    """After the free failures, each attempt of (name, address) sets a wait that doubles, up to a cap."""
    app = new_panel(
        redis_server.url,
        ADMIN_LOGIN_MAX_FAILURES_PER_USER=2,
        ADMIN_LOGIN_BASE_DELAY=1.0,
        ADMIN_LOGIN_MAX_DELAY=4.0,
    )
    client = make_client(app)
    waits = []
    for _ in range(4):
        response = client.login(admin_user, "wrong password")
        while response.status_code != 429:  # the 2nd, 3rd... failure set the next wait
            response = client.login(admin_user, "wrong password")
        wait = int(response.headers["Retry-After"])
        waits.append(wait)
        time.sleep(wait + 0.2)
    assert waits == [1, 2, 4, 4]
