"""The config data model and the Cobra apps.yaml format."""

from __future__ import annotations

import pytest
import yaml

from app.config_store import ConfigError, dump_apps_yaml, parse_apps_yaml
from app.models import App, AppSettings, RepublishRule, Role, Shard, generate_secret


def test_generated_secrets_are_32_alphanumerics_and_differ():
    secrets = {generate_secret() for _ in range(100)}
    assert len(secrets) == 100 and all(len(s) == 32 and s.isalnum() for s in secrets)


def test_app_round_trips_through_a_dict():
    app = App(
        key="k",
        roles={"r": Role(name="r", secret="s", permissions=("subscribe", "publish"), channels=("a*",))},
        settings=AppSettings(history_max_length=5, republish_rules=(RepublishRule("select * from a", "b"),)),
    )
    assert App.from_dict(app.to_dict()) == app


def test_permissions_are_kept_in_canonical_order():
    assert Role(name="r", secret="s", permissions=("admin", "publish")).permissions == ("publish", "admin")


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon", "new\nline"])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError):
        App(key=name)
    with pytest.raises(ValueError):
        Role(name=name, secret="s")


def test_unknown_permission_is_refused():
    with pytest.raises(ValueError, match="unknown permissions"):
        Role(name="r", secret="s", permissions=("publish", "fly"))


def test_empty_secret_is_refused():
    with pytest.raises(ValueError):
        Role(name="r", secret="")


@pytest.mark.parametrize("value", [-1, "ten", True, float("inf"), float("nan"), 2**63])
def test_bad_settings_values_are_refused(value):
    with pytest.raises(ValueError):
        AppSettings(history_max_length=value)


def test_shard_urls_must_be_redis_urls():
    Shard("a", "redis://127.0.0.1:6379/0")
    Shard("b", "rediss://:pw@host:6380/1")
    with pytest.raises(ValueError):
        Shard("c", "http://example.com")


def test_unknown_keys_in_stored_documents_are_ignored():
    data = App(key="k").to_dict()
    data["future_field"] = 1
    data["settings"]["future_setting"] = 2
    assert App.from_dict(data).key == "k"


COBRA = """
apps:
  key1:
    roles:
      r1: {secret: abcdefghijklmnop, permissions: [publish]}
"""


def test_cobra_apps_yaml_is_parsed():
    [app] = parse_apps_yaml(COBRA)
    assert app.key == "key1"
    assert app.roles["r1"].secret == "abcdefghijklmnop"
    assert app.roles["r1"].permissions == ("publish",)
    assert app.roles["r1"].channels == ("*",)


def test_dump_is_cobra_compatible_and_round_trips():
    apps = parse_apps_yaml(COBRA)
    assert yaml.safe_load(dump_apps_yaml(apps)) == yaml.safe_load(COBRA)
    assert parse_apps_yaml(dump_apps_yaml(apps)) == apps


@pytest.mark.parametrize(
    "text",
    [
        "",
        "apps: 3",
        "- a list",
        "apps: {k: {roles: [1]}}",
        "apps: {k: {roles: {r: {secret: ''}}}}",
        "apps: {'bad key': {}}",
        "apps: {k: {roles: {r: {secret: s, permissions: [nope]}}}}",
        "{{{",
        "apps: {k: {settings: {max_connections: " + "9" * 5000 + "}}}",
        "apps: {k: {settings: {publish_rate: .inf}}}",
        "apps: {k: {settings: {republish_rules: [{expression: 'select * from a', target: a}]}}}",
        "apps: {k: {settings: {republish_rules: [{expression: 'select from', target: b}]}}}",
    ],
)
def test_broken_yaml_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse_apps_yaml(text)
