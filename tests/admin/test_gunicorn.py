"""The panel under gunicorn with two workers: one session, one CSRF token and one login throttle for all of
them, because the signing key and the counters live in the shared Redis, not in a worker."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from admin.users import set_password
from tests.support.gunicorn import GunicornProcess

from .conftest import PASSWORD, unique

pytestmark = pytest.mark.slow


class Browser:
    """Cookies kept, redirects not followed, a new TCP connection per request (so the kernel spreads the
    requests over the workers)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def open(self, path: str, data: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            response = self.opener.open(self.base + path, body, timeout=20)
        except urllib.error.HTTPError as error:
            response = error
        return response.status, response.headers, response.read().decode()

    def token(self) -> str:
        _, _, html = self.open("/admin/config/")
        return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def gunicorn(redis_server, tmp_path_factory):
    process = GunicornProcess(redis_server.url, tmp_path_factory.mktemp("gunicorn-admin"), workers=2).start()
    yield process
    process.stop()


def test_one_session_for_every_worker(gunicorn, store):
    name = unique("gu")
    set_password(store, name, PASSWORD)
    browser = Browser(gunicorn.http)
    _, _, html = browser.open("/admin/login")
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    status, headers, _ = browser.open(
        "/admin/login", {"username": name, "password": PASSWORD, "csrf_token": token}
    )
    assert status == 302 and headers["Location"] == "/admin/"
    nodes = set()
    for _ in range(60):
        status, headers, _ = browser.open("/admin/apps/")
        assert status == 200  # never bounced to the login page by a worker that does not know the session
        nodes.add(headers["X-Cobra-Node"])
        if len(nodes) == 2:
            break
    assert len(nodes) == 2, "the kernel sent every request to one worker"
    # A token from one worker's page is good on the other: create an app through whichever answers.
    key = unique("gu-app")
    try:
        for n in range(4):
            status, _, _ = browser.open("/admin/apps/", {"key": f"{key}-{n}", "csrf_token": browser.token()})
            assert status == 302
    finally:
        for n in range(4):
            store.delete_app(f"{key}-{n}")
        store.delete_admin_user(name)
