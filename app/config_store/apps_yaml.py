"""The Cobra ``apps.yaml`` format: ``apps: {APPKEY: {roles: {ROLE: {secret, permissions: [...]}}}}``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from ..models import App, AppSettings, Role, compile_rule
from .schema import ConfigError


def parse_apps_yaml(text: str) -> list[App]:
    """``apps: {APPKEY: {roles: {ROLE: {secret, permissions: [...]}}}}`` (the Cobra format), plus our
    optional ``channels`` per role and ``settings`` per app."""
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. an integer of thousands of digits
        raise ConfigError(f"not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("apps"), dict):
        raise ConfigError("expected a mapping with an 'apps' mapping at the top")
    apps = []
    for key, spec in document["apps"].items():
        spec = spec or {}
        if not isinstance(spec, dict) or not isinstance(spec.get("roles") or {}, dict):
            raise ConfigError(f"app {key!r}: expected a mapping with a 'roles' mapping")
        try:
            roles = {}
            for name, role in (spec.get("roles") or {}).items():
                if not isinstance(role, dict):
                    raise ValueError(f"role {name!r} must be a mapping")
                roles[str(name)] = Role(
                    name=str(name),
                    secret=str(role.get("secret") or ""),
                    permissions=tuple(role.get("permissions") or ()),
                    channels=tuple(role.get("channels") or ("*",)),
                )
            settings = AppSettings.from_dict(spec.get("settings") or {})
            for number, rule in enumerate(settings.republish_rules, 1):
                try:
                    compile_rule(rule)
                except ValueError as exc:  # FilterError included
                    raise ValueError(f"republish rule {number}: {exc}") from None
            apps.append(App(key=str(key), roles=roles, settings=settings))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"app {key!r}: {exc}") from None
    return apps


def dump_apps_yaml(apps: Iterable[App]) -> str:
    document: dict[str, Any] = {"apps": {}}
    for app in sorted(apps, key=lambda a: a.key):
        roles = {}
        for name, role in app.roles.items():
            entry: dict[str, Any] = {"secret": role.secret, "permissions": list(role.permissions)}
            if role.channels != ("*",):
                entry["channels"] = list(role.channels)
            roles[name] = entry
        spec: dict[str, Any] = {"roles": roles}
        settings = {k: v for k, v in app.settings.to_dict().items() if v not in (None, [])}
        if settings:
            spec["settings"] = settings
        document["apps"][app.key] = spec
    return yaml.safe_dump(document, sort_keys=False)
