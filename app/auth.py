"""Role-secret authentication and permission checks (PROTOCOL §3, §4). No I/O.

The challenge: the server sends a nonce, the client answers ``Base64(HMAC-MD5(secret, nonce))``. MD5 is what
every deployed Cobra client computes, so it stays; the comparison is constant-time and nonces come from
:mod:`secrets`.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import re
import secrets
from functools import lru_cache

from .models import Role

AUTH_METHOD = "role_secret"


def new_nonce() -> str:
    """An ASCII nonce from a CSPRNG (the C++ SDK requires a string)."""
    return base64.b64encode(secrets.token_bytes(21)).decode("ascii")


def new_connection_id() -> str:
    """12 hex characters, as the reference server's ids look."""
    return secrets.token_hex(6)


def compute_hash(secret: str, nonce: str) -> str:
    """``Base64(HMAC-MD5(key=UTF-8(secret), msg=UTF-8(nonce)))``: 24 characters."""
    digest = hmac.new(secret.encode("utf-8"), nonce.encode("utf-8"), hashlib.md5).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_challenge(role: Role, nonce: str, candidate: object, now: float) -> bool:
    """True when ``candidate`` is the hash of the nonce under the role's secret, or under its previous
    secret while a rotation's grace period lasts. Every valid secret is checked, so timing does not tell
    which one matched."""
    if not isinstance(candidate, str):
        return False
    candidate_bytes = candidate.encode("utf-8", "replace")
    matched = False
    for secret in role.secrets_valid_at(now):
        matched |= hmac.compare_digest(candidate_bytes, compute_hash(secret, nonce).encode("ascii"))
    return matched


def required_permission(action: str) -> str:
    """``rtm/<verb>`` needs ``<verb>``; ``admin/*`` needs ``admin`` (PROTOCOL §4)."""
    service, _, verb = action.partition("/")
    return "admin" if service == "admin" else verb


@lru_cache(maxsize=4096)
def _compile_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if "*" in patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def channel_allowed(role: Role, channel: str) -> bool:
    """Whether the role's channel patterns (globs, default ``*``) admit ``channel``."""
    matcher = _compile_patterns(role.channels)
    return matcher is None or matcher.match(channel) is not None
