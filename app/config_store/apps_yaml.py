"""The Cobra ``apps.yaml`` format: ``apps: {APPKEY: {roles: {ROLE: {secret, permissions: [...]}}}}``.

One parse function for every way a file comes in (``import-config``, the panel's import,
``COBRA_APPS_CONFIG``), so they refuse the same things: what the models refuse, duplicate app keys and role
names (YAML would keep the last one silently), invalid republish rules, and secrets shorter than 16 or longer
than 256 characters unless legacy secrets are allowed explicitly. Odd but valid input (a role without
permissions) is warned of.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..models import App, AppSettings, Role, Shard, compile_rule, role_warnings, secret_problem
from .schema import ConfigError
from .shards_yaml import parse_shard_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedApps:
    """The apps of a file, and what is odd about them (warnings; never a secret)."""

    apps: list[App]
    warnings: list[str] = field(default_factory=list)
    shards: tuple[Shard, ...] | None = None  # the file's ``shards`` list; None: the file has none


def parse_apps_yaml(text: str, *, allow_legacy_secrets: bool = False) -> list[App]:
    """The apps of a Cobra ``apps.yaml``; warnings are logged. Raises ConfigError naming the problem."""
    parsed = read_apps_yaml(text, allow_legacy_secrets=allow_legacy_secrets)
    for warning in parsed.warnings:
        log.warning("apps.yaml: %s", warning)
    return parsed.apps


def read_apps_yaml(text: str, *, allow_legacy_secrets: bool = False) -> ParsedApps:
    """``apps: {APPKEY: {roles: {ROLE: {secret, permissions: [...]}}}}`` (the Cobra format), plus our
    optional ``channels`` per role and ``settings`` per app, and a top-level ``shards`` list
    (:mod:`.shards_yaml`)."""
    document, lines = _load(text)
    if not isinstance(document, dict) or not isinstance(document.get("apps"), dict):
        raise ConfigError("expected a mapping with an 'apps' mapping at the top")
    apps, warnings = [], []
    for key, spec in document["apps"].items():
        where = f"app {key!r}" + (f" (line {lines[(key,)]})" if (key,) in lines else "")
        spec = spec or {}
        if not isinstance(spec, dict) or not isinstance(spec.get("roles") or {}, dict):
            raise ConfigError(f"{where}: expected a mapping with a 'roles' mapping")
        try:
            roles = {}
            for name, role in (spec.get("roles") or {}).items():
                role_where = f"role {name!r}" + (
                    f" (line {lines[(key, name)]})" if (key, name) in lines else ""
                )
                if not isinstance(role, dict):
                    raise ValueError(f"{role_where} must be a mapping")
                roles[str(name)] = made = Role(
                    name=str(name),
                    secret=str(role.get("secret") or ""),
                    permissions=tuple(role.get("permissions") or ()),
                    channels=tuple(role.get("channels") or ("*",)),
                )
                problem = secret_problem(made.secret)
                if problem and not allow_legacy_secrets:
                    raise ValueError(
                        f"{role_where}: {problem} (import-config --allow-legacy-secrets accepts it)"
                    )
                if problem:
                    warnings.append(f"{where}: {role_where}: {problem}; accepted as a legacy secret")
                warnings.extend(f"{where}: {warning}" for warning in role_warnings(made))
            settings = AppSettings.from_dict(spec.get("settings") or {})
            for number, rule in enumerate(settings.republish_rules, 1):
                try:
                    compile_rule(rule)
                except ValueError as exc:  # FilterError included
                    raise ValueError(f"republish rule {number} ({rule.expression!r}): {exc}") from None
            label = spec.get("metrics_label") or ""
            raw_settings = spec.get("settings")
            durability = raw_settings.get("durability") if isinstance(raw_settings, dict) else None
            durability = durability or "leader"
            apps.append(
                App(
                    key=str(key),
                    roles=roles,
                    settings=settings,
                    metrics_label=str(label),
                    durability=durability,
                )
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    shards = parse_shard_list(document["shards"]) if "shards" in document else None
    return ParsedApps(apps, warnings, shards)


def _load(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The document, and the line of each app key and role name; refuses duplicate keys, which plain
    YAML loading resolves silently by keeping the last one."""
    try:
        # The reader checks the characters as it is made: a control character raises here already.
        loader = yaml.SafeLoader(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
        lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            _check_duplicates(node, (), lines, set())
        return loader.construct_document(node) if node is not None else None, lines
    except ConfigError:
        raise
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. an integer of thousands of digits
        raise ConfigError(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _check_duplicates(
    node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], seen: set[int]
) -> None:
    # Aliases share nodes: visiting each once keeps a "billion laughs" file (and a cyclic one) linear.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(item, (*path, None), lines, seen)
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            ident = (key_node.tag, key_node.value)
            if ident in first:
                raise ConfigError(
                    f"{_duplicate(path, key_node.value)} at line {line} (first at line {first[ident]})"
                )
            first[ident] = line
            key: Any = key_node.value
            if path == ("apps",):
                lines[(key,)] = line
            elif len(path) == 3 and path[0] == "apps" and path[2] == "roles":
                lines[(path[1], key)] = line
        else:
            key = None
        _check_duplicates(value_node, (*path, key), lines, seen)


def _duplicate(path: tuple[Any, ...], key: str) -> str:
    if path == ("apps",):
        return f"duplicate app key {key!r}"
    if len(path) == 3 and path[0] == "apps" and path[2] == "roles":
        return f"duplicate role {key!r} in app {path[1]!r}"
    return f"duplicate key {key!r} under {'.'.join(str(p) for p in path) or 'the top'}"


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
        if app.durability != "leader":
            settings["durability"] = app.durability
        if settings:
            spec["settings"] = settings
        if app.metrics_label:
            spec["metrics_label"] = app.metrics_label
        document["apps"][app.key] = spec
    return yaml.safe_dump(document, sort_keys=False)
