"""The public Satori RTM SDKs, unchanged, as subprocesses the tests talk to (PROTOCOL §10: they must work in
JSON and in CBOR mode).

scripts/install-sdks.sh installs them (the JavaScript ``satori-rtm-sdk`` 1.2.2 from npm into
tests/sdk/js/node_modules, the Python ``satori-rtm-sdk`` 1.5.0 from PyPI into .state/satori-sdk-venv); a
driver script per SDK (tests/sdk/js/driver.js, tests/sdk/python/driver.py) takes JSON-line commands on stdin
and prints what the SDK reports as JSON-line events. :class:`SdkDriver` is the test side of that
conversation.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT
from tests.support.reference import unavailable

INSTALL = ROOT / "scripts" / "install-sdks.sh"
JS_DRIVER = ROOT / "tests" / "sdk" / "js" / "driver.js"
PYTHON_DRIVER = ROOT / "tests" / "sdk" / "python" / "driver.py"
PYTHON_VENV = ROOT / ".state" / "satori-sdk-venv"

# (sdk, protocol) pairs every end-to-end test runs with, and their pytest ids
MODES = [("js", "json"), ("js", "cbor"), ("python", "json"), ("python", "cbor")]
MODE_IDS = [f"{sdk}-{protocol}" for sdk, protocol in MODES]

Event = dict[str, Any]


@functools.cache
def _install(sdk: str) -> tuple[bool, str]:
    try:
        result = subprocess.run([str(INSTALL), sdk], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return False, f"installing the {sdk} Satori SDK took more than 15 minutes"
    if result.returncode != 0:
        return False, f"the {sdk} Satori SDK could not be installed:\n{result.stderr[-2000:]}"
    return True, ""


def install_sdk(sdk: str) -> None:
    """Install one SDK (a no-op when it already is); fail under CI=true, skip elsewhere, when it cannot be."""
    installed, why = _install(sdk)
    if not installed:
        unavailable(why)


def driver_command(sdk: str) -> list[str]:
    if sdk == "js":
        # --no-deprecation: the SDK's ws 1.x calls Buffer(); the warning says nothing about our broker
        return ["node", "--no-deprecation", str(JS_DRIVER)]
    return [str(PYTHON_VENV / "bin" / "python"), str(PYTHON_DRIVER)]


class SdkDriver:
    """One SDK client in its own process: ``command()`` sends it a command, the ``wait_*`` methods poll the
    events it printed (every event is kept, in order, for the assertions)."""

    def __init__(
        self,
        sdk: str,
        protocol: str,
        endpoint: str,
        appkey: str,
        role: str,
        secret: str,
        log_dir: Path,
        **options: Any,
    ) -> None:
        self.sdk, self.protocol = sdk, protocol
        config = {
            "endpoint": endpoint,
            "appkey": appkey,
            "role": role,
            "secret": secret,
            "protocol": protocol,
            **options,
        }
        self.stderr_path = log_dir / f"sdk-{sdk}-{protocol}-{id(self):x}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [*driver_command(sdk), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
        )
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._refs = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:  # a stray line (a driver bug): kept for the transcript
                event = {"event": "stray_output", "text": line.decode(errors="replace")}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self.events.append({"event": "exited"})
            self._changed.notify_all()

    # ------------------------------------------------------------------ talking to it
    def command(self, cmd: str, **fields: Any) -> int:
        """Send one command; returns its ``ref``, which the SDK's reply event carries."""
        return self.commands((cmd, fields))[0]

    def commands(self, *commands: tuple[str, dict[str, Any]]) -> list[int]:
        """Send several commands in one write, so that the driver reads them at once; returns their refs."""
        refs = [next(self._refs) for _ in commands]
        lines = [
            json.dumps({"cmd": cmd, "ref": ref, **fields}) + "\n"
            for ref, (cmd, fields) in zip(refs, commands, strict=True)
        ]
        assert self.process.stdin is not None
        self.process.stdin.write("".join(lines).encode())
        self.process.stdin.flush()
        return refs

    def request(self, cmd: str, timeout: float = 30, **fields: Any) -> Event:
        """A command the SDK sends with an ack callback (publish, read, write, delete): the reply PDU."""
        ref = self.command(cmd, **fields)
        return self.wait_for(lambda e: e["event"] == "reply" and e.get("ref") == ref, timeout, f"{cmd} reply")

    # ------------------------------------------------------------------ what it saw
    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 30, what: str = "event") -> Event:
        """The first event (since the start) that matches; fails with the whole transcript otherwise."""
        return self.wait_until(lambda: next((e for e in self.events if predicate(e)), None), timeout, what)

    def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Evaluate ``condition`` (with the events locked) at each new event, until it is truthy."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.events and self.events[-1]["event"] == "exited"):
                    raise AssertionError(f"{what} not seen from the {self.sdk} SDK within {timeout}s\n{self}")
                self._changed.wait(min(remaining, 1.0))

    def wait_event(self, name: str, timeout: float = 30, **fields: Any) -> Event:
        return self.wait_for(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items()), timeout, name
        )

    def connected(self, timeout: float = 30) -> Event:
        return self.wait_event("connected", timeout)

    def subscribe(self, sub_id: str, mode: str = "SIMPLE", timeout: float = 30, **body: Any) -> Event:
        """Subscribe and wait until the SDK says the subscription is active (or failed)."""
        self.command("subscribe", id=sub_id, mode=mode, body=body)
        return self.wait_for(
            lambda e: e["event"] in ("subscribed", "subscribe_failed") and e.get("id") == sub_id,
            timeout,
            f"subscribe {sub_id}",
        )

    def messages(self, sub_id: str) -> list[Any]:
        """Every message delivered to subscription ``sub_id`` so far, in order."""
        with self._changed:
            data = [e for e in self.events if e["event"] == "data" and e["id"] == sub_id]
        return [m for e in data for m in e["messages"]]

    def wait_messages(self, sub_id: str, count: int, timeout: float = 30) -> list[Any]:
        return self.wait_until(
            lambda: m if len(m := self.messages(sub_id)) >= count else None,
            timeout,
            f"{count} messages on {sub_id}",
        )

    def stop_reading(self) -> None:
        """Freeze the SDK's process (SIGSTOP): it reads nothing more, and the broker's output to it backs up,
        as for a client on a stalled machine or network. (Blocking the SDK's callbacks would not do: the
        Python SDK queues incoming PDUs without bound, so its socket is read however slow the application.)"""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume_reading(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e["event"] == name]

    def __str__(self) -> str:
        with self._changed:
            sequence = [e["event"] for e in self.events]
            transcript = "\n".join(json.dumps(e)[:300] for e in self.events[-40:])
        # the run of event names in order, repeats collapsed ("data x81, disconnected, connected, ...")
        runs = [(name, len(list(group))) for name, group in itertools.groupby(sequence)]
        summary = ", ".join(name if n == 1 else f"{name} x{n}" for name, n in runs)
        stderr = self.stderr_path.read_text(errors="replace")[-3000:] if self.stderr_path.exists() else ""
        return f"--- events ---\n{summary}\n--- last events ---\n{transcript}\n--- stderr ---\n{stderr}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.resume_reading()
            try:
                self.command("exit")
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        self._stderr.close()
