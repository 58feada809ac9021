"""A browser of the admin panel over real sockets, from a chosen loopback source address, for the tests that
attack a running broker or gunicorn: login bursts from threads, cookies copied between browsers."""

from __future__ import annotations

import http.client
import random
import re
import threading
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
COOKIE = "cobra_admin"


def random_loopback() -> str:
    """A fresh 127.x.y.z source address: Linux answers the whole 127/8 on ``lo``, so each test's attacker
    (and owner) is an address of its own and throttle counters never spill between tests."""
    return f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


class PanelBrowser:
    """One cookie, kept by hand; every request on a new TCP connection from ``source`` (so under gunicorn
    the kernel spreads the requests over the workers)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port = port
        self.source = source
        self.cookie: str | None = None

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=120, source_address=(self.source, 0)
        )
        try:
            sent = dict(headers or {})
            body = None
            if form is not None:
                body = urllib.parse.urlencode(form).encode()
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            if self.cookie:
                sent["Cookie"] = f"{COOKIE}={self.cookie}"
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            for name, value in response.getheaders():
                if name.lower() == "set-cookie" and value.startswith(COOKIE + "="):
                    self.cookie = value.split(";", 1)[0].split("=", 1)[1] or None
            return response.status, {k.lower(): v for k, v in response.getheaders()}, text
        finally:
            connection.close()

    def upload(
        self, path: str, fields: dict[str, str], name: str, filename: str, content: bytes
    ) -> tuple[int, str]:
        """A multipart/form-data POST with one file, as a browser's file input sends it."""
        boundary = "----panel-test-" + uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
            for key, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/x-yaml\r\n\r\n".encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=120, source_address=(self.source, 0)
        )
        try:
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
            if self.cookie:
                headers["Cookie"] = f"{COOKIE}={self.cookie}"
            connection.request("POST", path, body=b"".join(parts), headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def token(self, path: str = "/admin/login") -> str:
        _, _, html = self.request("GET", path)
        match = META_TOKEN.search(html)
        assert match, f"no CSRF token in {path}"
        return match.group(1)

    def login(self, name: str, password: str, token: str | None = None) -> int:
        form = {"username": name, "password": password, "csrf_token": token or self.token()}
        return self.request("POST", "/admin/login", form)[0]


def login_burst(port: int, source: str, name: str, passwords: list[str]) -> list[int]:
    """Every password tried at once, one thread and one connection each, released together by a barrier
    once every thread holds its form (one session, one CSRF token, as a scripted attacker would)."""
    browser = PanelBrowser(port, source)
    token = browser.token()
    barrier = threading.Barrier(len(passwords))

    def attempt(password: str) -> int:
        mine = PanelBrowser(port, source)
        mine.cookie = browser.cookie
        barrier.wait(timeout=60)
        return mine.login(name, password, token)

    with ThreadPoolExecutor(max_workers=len(passwords)) as pool:
        return list(pool.map(attempt, passwords))
