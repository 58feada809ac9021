"""``?next=`` carrying control characters (issue 14): a CR/LF cannot split the Location header, and the
login answers with a clean redirect to the dashboard instead of a 500, in the panel and in a live broker."""

from __future__ import annotations

import http.client
import re
from urllib.parse import quote, urlencode

import pytest

from admin.users import set_password
from tests.support.processes import BrokerProcess

from .conftest import META_TOKEN, PASSWORD, unique

HOSTILE = [
    "/admin/\r\nSet-Cookie: x=1",
    "/admin/\nx",
    "/admin/\rx",
    "\r\nSet-Cookie: x=1",
    "/admin/\t/x",
    "/admin/\x00",
]


@pytest.mark.parametrize("target", HOSTILE)
def test_login_with_a_control_character_in_next_goes_to_the_dashboard(client, admin_user, target):
    response = client.client.post(
        "/admin/login",
        query_string={"next": target},
        data={"username": admin_user, "password": PASSWORD, "csrf_token": client.csrf_token()},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert "x=1" not in str(response.headers)


@pytest.mark.parametrize("target", HOSTILE)
def test_a_logged_in_user_visiting_login_with_such_a_next_goes_to_the_dashboard(panel, target):
    response = panel.client.get("/admin/login", query_string={"next": target})
    assert (response.status_code, response.headers["Location"]) == (302, "/admin/")


def test_an_ordinary_next_is_still_followed(client, admin_user):
    response = client.client.post(
        "/admin/login",
        query_string={"next": "/admin/audit/?app=x"},
        data={"username": admin_user, "password": PASSWORD, "csrf_token": client.csrf_token()},
    )
    assert response.headers["Location"] == "/admin/audit/?app=x"


@pytest.fixture
def next_broker(redis_server, test_apps, tmp_path):
    process = BrokerProcess(redis_server.url, tmp_path).start()
    yield process
    process.stop()


def request(broker: BrokerProcess, method: str, path: str, cookie: str = "", body: str = ""):
    connection = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=10)
    headers = {"Cookie": cookie} if cookie else {}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=body or None, headers=headers)
    response = connection.getresponse()
    data = response.read().decode(errors="replace")
    connection.close()
    return response, data


def test_a_live_broker_redirects_cleanly(next_broker, store):
    name = unique("next")
    set_password(store, name, PASSWORD)
    try:
        page, html = request(next_broker, "GET", "/admin/login")
        cookie = re.match(r"[^;]+", page.getheader("Set-Cookie")).group(0)
        token = META_TOKEN.search(html).group(1)
        form = urlencode({"username": name, "password": PASSWORD, "csrf_token": token})
        target = "/admin/login?next=" + quote("/admin/\r\nSet-Cookie: x=1", safe="/")
        response, _ = request(next_broker, "POST", target, cookie, form)
        assert response.status == 302, response.status
        assert response.getheader("Location") == "/admin/"
        assert all("x=1" not in value for _, value in response.getheaders())
        cookie = re.match(r"[^;]+", response.getheader("Set-Cookie")).group(0)
        # Logged in: the login page sends the user on, to the same safe default.
        response, _ = request(next_broker, "GET", "/admin/login?next=%0d%0aSet-Cookie:x", cookie)
        assert (response.status, response.getheader("Location")) == (302, "/admin/")
        response, _ = request(next_broker, "GET", "/admin/login?next=/admin/%0d%0aSet-Cookie:x", cookie)
        assert (response.status, response.getheader("Location")) == (302, "/admin/")
    finally:
        store.delete_admin_user(name)
    output = next_broker.output()
    assert "Traceback" not in output, output[-3000:]
