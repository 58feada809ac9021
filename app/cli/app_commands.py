"""``apps show|set|metrics-label|republish``: per-app settings, metrics label, republish rules, from a shell.

Every change goes through the config store, which announces it: running brokers apply it without a restart.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from typing import Any

from ..config_store import ConfigError
from ..models import (
    DURABILITY_MODES,
    App,
    AppSettings,
    RepublishRule,
    compile_rule,
    validate_durability,
    validate_name,
)
from ..stream_sql import FilterError
from .audit import record
from .errors import fail
from .store_access import add_store_arguments, open_store

# The numeric per-app settings `apps set` accepts (republish rules have their own command).
APP_SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AppSettings) if f.name != "republish_rules")
FLOAT_SETTINGS = frozenset({"publish_rate", "replication_timeout"})
RESET_WORDS = frozenset({"default", "none", "null", ""})


def register(commands: Any) -> None:
    apps = commands.add_parser("apps", help="per-app settings: history, limits, republish rules")
    app_commands = apps.add_subparsers(dest="apps_command", required=True, metavar="SUBCOMMAND")
    show = app_commands.add_parser("show", help="print an app's settings")
    show.add_argument("appkey")
    show.set_defaults(handler=show_app)
    setter = app_commands.add_parser(
        "set", help="change an app's settings: key=value ... ('default' resets to the broker default)"
    )
    setter.add_argument("appkey")
    setter.add_argument(
        "pairs",
        nargs="+",
        metavar="key=value",
        help=", ".join(APP_SETTING_NAMES) + f", durability ({'|'.join(DURABILITY_MODES)})",
    )
    setter.set_defaults(handler=set_app)
    labeller = app_commands.add_parser(
        "metrics-label", help="what /metrics calls the app instead of its key (no label: its key again)"
    )
    labeller.add_argument("appkey")
    labeller.add_argument("label", nargs="?", default="", help="letters, digits, '_', '.', '-' (1-64)")
    labeller.set_defaults(handler=set_metrics_label)
    republish = app_commands.add_parser("republish", help="list, add or remove an app's republish rules")
    republish.add_argument("appkey")
    rule_commands = republish.add_subparsers(dest="rule_command", required=True, metavar="SUBCOMMAND")
    list_rules_parser = rule_commands.add_parser("list", help="the rules, numbered")
    list_rules_parser.set_defaults(handler=list_rules)
    add_rule_parser = rule_commands.add_parser(
        "add", help='add a rule: "select ... from `source` [where ...]" TARGET'
    )
    add_rule_parser.add_argument("expression", help="StreamSQL; its FROM channel is the source")
    add_rule_parser.add_argument("target", help="channel (same app) that receives the projected messages")
    add_rule_parser.set_defaults(handler=add_rule)
    remove_rule_parser = rule_commands.add_parser("remove", help="remove rule number N (see list)")
    remove_rule_parser.add_argument("number", type=int)
    remove_rule_parser.set_defaults(handler=remove_rule)

    for parser in (show, setter, labeller, list_rules_parser, add_rule_parser, remove_rule_parser):
        add_store_arguments(parser)


def parse_setting(pair: str) -> tuple[str, int | float | None]:
    """``"history_max_length=100"`` → (name, value); ``"name=default"`` → (name, None). Raises ValueError."""
    name, equals, text = pair.partition("=")
    name = name.strip().replace("-", "_")
    if not equals:
        raise ValueError(f"expected key=value, got {pair!r}")
    if name not in APP_SETTING_NAMES:
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(APP_SETTING_NAMES)}")
    text = text.strip()
    if text.lower() in RESET_WORDS:
        return name, None
    kind = float if name in FLOAT_SETTINGS else int
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(
            f"{name} must be {'a number' if kind is float else 'an integer'}, got {text!r}"
        ) from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {text!r}")
    return name, value


def parse_durability(pair: str) -> str | None:
    """``"durability=replicated"`` → "replicated" ("default" → "leader"); None for any other setting."""
    name, equals, text = pair.partition("=")
    if not equals or name.strip() != "durability":
        return None
    text = text.strip().lower()
    return "leader" if text in RESET_WORDS else validate_durability(text)


def set_app(args: argparse.Namespace) -> int:
    try:
        durability = None
        changes = {}
        for pair in args.pairs:
            mode = parse_durability(pair)
            if mode is not None:
                durability = mode
            else:
                name, value = parse_setting(pair)
                changes[name] = value
        replace(AppSettings(), **changes)  # validates the combination before anything is written
    except ValueError as exc:
        return fail(str(exc))

    def change(app: App) -> App:
        app = replace(app, settings=replace(app.settings, **changes))
        return app if durability is None else replace(app, durability=durability)

    with open_store(args) as store:
        try:
            app = store.update_app(args.appkey, change)
        except ConfigError as exc:
            return fail(str(exc))
        record(
            store,
            "app.settings",
            app=app.key,
            **{k: "default" if v is None else v for k, v in changes.items()},
            **({} if durability is None else {"durability": durability}),
        )
    _print_settings(app)
    return 0


def set_metrics_label(args: argparse.Namespace) -> int:
    label = args.label.strip()
    try:
        if label:
            validate_name("metrics label", label)
    except ValueError as exc:
        return fail(str(exc))
    with open_store(args) as store:
        try:
            app = store.update_app(args.appkey, lambda a: replace(a, metrics_label=label))
        except ConfigError as exc:
            return fail(str(exc))
        record(store, "app.metrics_label", app=app.key, label=label or "(the app key)")
    _print_settings(app)
    return 0


def show_app(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        app = store.get_app(args.appkey)
    if app is None:
        return fail(f"no app {args.appkey!r}")
    _print_settings(app)
    return 0


def _print_settings(app: App) -> None:
    print(f"app {app.key}")
    print(f"  durability = {app.durability}")
    for name in APP_SETTING_NAMES:
        value = getattr(app.settings, name)
        print(f"  {name} = {'(broker default)' if value is None else value}")
    print(f"  republish_rules = {len(app.settings.republish_rules)}")
    print(f"  metrics_label = {app.metrics_label or '(the app key)'}")


def list_rules(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        app = store.get_app(args.appkey)
    if app is None:
        return fail(f"no app {args.appkey!r}")
    if not app.settings.republish_rules:
        print(f"app {app.key} has no republish rules")
    for number, rule in enumerate(app.settings.republish_rules, 1):
        print(f"{number}. {rule.expression}  ->  {rule.target}")
    return 0


def add_rule(args: argparse.Namespace) -> int:
    rule = RepublishRule(expression=args.expression, target=args.target)
    try:
        source = compile_rule(rule).channel
    except FilterError as exc:
        return fail(f"invalid StreamSQL expression: {exc}")
    except ValueError as exc:
        return fail(str(exc))

    def append(app: App) -> App:
        if rule in app.settings.republish_rules:
            raise ConfigError("this rule exists already")
        return replace(
            app, settings=replace(app.settings, republish_rules=(*app.settings.republish_rules, rule))
        )

    with open_store(args) as store:
        try:
            app = store.update_app(args.appkey, append)
        except ConfigError as exc:
            return fail(str(exc))
        record(store, "app.republish.add", app=app.key, target=rule.target, expression=rule.expression)
    print(f"rule {len(app.settings.republish_rules)} added: {source} -> {rule.target}")
    return 0


def remove_rule(args: argparse.Namespace) -> int:
    removed: list[RepublishRule] = []

    def drop(app: App) -> App:
        rules = list(app.settings.republish_rules)
        if not 1 <= args.number <= len(rules):
            raise ConfigError(f"no rule {args.number}; app {app.key} has {len(rules)} rule(s)")
        removed[:] = [rules.pop(args.number - 1)]
        return replace(app, settings=replace(app.settings, republish_rules=tuple(rules)))

    with open_store(args) as store:
        try:
            store.update_app(args.appkey, drop)
        except ConfigError as exc:
            return fail(str(exc))
        record(
            store,
            "app.republish.remove",
            app=args.appkey,
            target=removed[0].target,
            expression=removed[0].expression,
        )
    print(f"rule {args.number} removed: {removed[0].expression}  ->  {removed[0].target}")
    return 0
