"""Audit entries of changes made from a shell: the panel's log, with actor ``cli:<OS user>``."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterable

from ..config_store import ConfigStore
from ..models import App


def cli_actor() -> str:
    """``cli:<OS user>``: who ran the command, as far as the OS says (no login exists on this path)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a container), no USER variable
        user = "unknown"
    return f"cli:{user}"


def record(store: ConfigStore, action: str, app: str = "", target: str = "", **details: object) -> None:
    """One audit entry for a change the command just made; ``ip`` holds the host it ran on."""
    store.record_change(cli_actor(), action, app, target, ip=socket.gethostname(), **details)


def record_import(store: ConfigStore, apps: Iterable[App], existing: Iterable[str]) -> None:
    store.record_import(cli_actor(), apps, existing, ip=socket.gethostname())
