"""The panel as the broker serves it: under /admin/ of the broker's own port, links and static files
included, and when a front proxy already moved the prefix to SCRIPT_NAME."""

from __future__ import annotations

import urllib.error
import urllib.request

from admin.users import set_password
from bench.wsclient import http_request, upgrade_request
from tests.conftest import TEST_APP

from .conftest import PASSWORD, unique


def fetch(url: str) -> tuple[int, str, dict]:
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_broker_serves_the_panel_under_admin(broker):
    status, _, headers = fetch(broker.http + "/admin/")
    assert status == 302 and headers["Location"].startswith("/admin/login")
    status, body, _ = fetch(broker.http + "/admin/login")
    assert status == 200
    assert 'href="/admin/static/admin.css' in body
    assert fetch(broker.http + "/admin/static/admin.css")[0] == 200
    assert fetch(broker.http + "/admin")[0] in (302, 308)
    assert fetch(broker.http + "/health/")[1] == "OK\n"  # the broker's own paths are untouched


def test_a_prefix_already_in_script_name_is_kept(panel_app, store):
    name = unique("proxy")
    set_password(store, name, PASSWORD)
    client = panel_app.test_client()
    page = client.get("/login", environ_overrides={"SCRIPT_NAME": "/admin"})
    assert page.status_code == 200
    assert 'href="/admin/static/admin.css' in page.get_data(as_text=True)
    store.delete_admin_user(name)


def test_the_mount_ends_at_the_prefix_segment(broker):
    status, body, _ = fetch(broker.http + "/administrator")
    assert (status, body) == (404, "KO\n")  # the broker's own 404, not the panel's page
    # The prefix is taken off once: /admin/admin/login is no login page (a 404, behind the login wall).
    assert fetch(broker.http + "/admin/admin/login")[0] in (302, 404)
    status, _, headers = fetch(broker.http + "/admin/login")
    assert status == 200 and headers["X-Cobra-Node"]


def test_plain_paths_refuse_other_methods_but_the_panel_takes_posts(broker):
    request = urllib.request.Request(broker.http + "/version/", data=b"x", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as error:
        assert (error.code, error.headers["Allow"]) == (405, "GET, HEAD")
    else:
        raise AssertionError("POST /version/ was accepted")
    status, _, _ = fetch_post(broker.http + "/admin/login")
    assert status == 400  # the panel answered: a form without its CSRF token


def test_an_upgrade_under_admin_goes_to_the_broker(broker, test_apps):
    status, headers, _ = http_request(broker.port, upgrade_request(f"/admin/?appkey={TEST_APP}"))
    assert status == 101 and headers["x-cobra-node"]


def fetch_post(url: str) -> tuple[int, str, dict]:
    request = urllib.request.Request(url, data=b"username=x", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)
