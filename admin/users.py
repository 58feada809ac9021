"""Admin users: salted password hashes in the config store, and the flask-login user object.

A user record is ``{name, password_hash, session_epoch, created_at, password_changed_at, last_login_at}``.
``session_epoch`` is part of the session's user id: changing a password (or deleting the user) draws a new
one, which logs out every session that user had open, in every process.
"""

from __future__ import annotations

import functools
import secrets
import time
from typing import Any

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from app.config_store import ConfigStore
from app.models import validate_name

from .context import run_blocking

FIRST_ADMIN = "admin"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte-long "password" is a cheap way to burn our CPU


class AdminUser(UserMixin):
    def __init__(self, record: dict[str, Any]) -> None:
        self.name: str = record["name"]
        self.session_epoch: str = record["session_epoch"]
        self.created_at: float = record.get("created_at") or 0.0
        self.password_changed_at: float = record.get("password_changed_at") or 0.0
        self.last_login_at: float | None = record.get("last_login_at")

    def get_id(self) -> str:
        return f"{self.session_epoch}:{self.name}"


@functools.cache
def _dummy_hash() -> str:
    """Checked when the user name is unknown, so that a wrong name costs as much time as a wrong password
    and response times do not tell which user names exist. Made on first use: it costs a hash."""
    return generate_password_hash(secrets.token_hex(16))


def validate_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def generate_password() -> str:
    """16 URL-safe characters from a CSPRNG (96 bits)."""
    return secrets.token_urlsafe(12)


def hash_password(password: str) -> str:
    # werkzeug's default: scrypt with a random 16-byte salt, the parameters stored in the hash itself.
    return run_blocking(generate_password_hash, password)


def _record(name: str, password: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    now = time.time()
    record = dict(previous or {"created_at": now, "last_login_at": None})
    record.update(
        name=name,
        password_hash=hash_password(password),
        session_epoch=secrets.token_hex(8),
        password_changed_at=now,
    )
    return record


def set_password(store: ConfigStore, name: str, password: str) -> bool:
    """Create user ``name`` or reset its password (ending its open sessions). True when created."""
    validate_name("user name", name)
    validate_password(password)
    previous = store.admin_user(name)
    store.put_admin_user(_record(name, password, previous))
    return previous is None


def check_credentials(
    store: ConfigStore, name: str, password: str, record_login: bool = True
) -> AdminUser | None:
    """The user if ``password`` is right; None otherwise, in about the same time either way."""
    record = store.admin_user(name) if isinstance(name, str) and 0 < len(name) <= 64 else None
    password = password if isinstance(password, str) else ""
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    stored = record["password_hash"] if record else _dummy_hash()
    valid = run_blocking(check_password_hash, stored, password)
    if not (valid and record):
        return None
    if record_login:
        record["last_login_at"] = time.time()
        store.put_admin_user(record)
    return AdminUser(record)


def load_user(store: ConfigStore, user_id: str) -> AdminUser | None:
    """flask-login's loader: the session's user id must still name a user with the same session epoch."""
    epoch, _, name = user_id.partition(":")
    record = store.admin_user(name) if name else None
    if record is None or not secrets.compare_digest(record.get("session_epoch", ""), epoch):
        return None
    return AdminUser(record)


def ensure_first_admin(store: ConfigStore) -> tuple[str, str] | None:
    """When the store has no admin user yet, create ``admin`` with a generated password and return
    ``(name, password)`` — shown once by ``python -m app run``; never logged."""
    if store.admin_users():
        return None
    password = generate_password()
    if store.add_first_admin_user(_record(FIRST_ADMIN, password)):
        return FIRST_ADMIN, password
    return None
