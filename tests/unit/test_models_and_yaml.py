"""The config data model and the Cobra apps.yaml format."""

from __future__ import annotations

import pytest
import yaml

from app.config_store import ConfigError, dump_apps_yaml, parse_apps_yaml, read_apps_yaml
from app.models import App, AppSettings, RepublishRule, Role, Shard, compile_rule, generate_secret


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
        "\x1f",
        "apps: {k: {settings: {max_connections: " + "9" * 5000 + "}}}",
        "apps: {k: {settings: {publish_rate: .inf}}}",
        "apps: {k: {settings: {republish_rules: [{expression: 'select * from a', target: a}]}}}",
        "apps: {k: {settings: {republish_rules: [{expression: 'select from', target: b}]}}}",
    ],
)
def test_broken_yaml_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse_apps_yaml(text)


# --------------------------------------------------------------------------- refusals of weak or odd input
def one_role(secret: str, permissions: str = "[publish]") -> str:
    return f"apps:\n  k:\n    roles:\n      r: {{secret: {secret}, permissions: {permissions}}}\n"


@pytest.mark.parametrize(
    ("secret", "length"), [("abc", 3), ("a" * 15, 15), ("b" * 257, 257), ("c" * 5000, 5000)]
)
def test_secrets_outside_16_to_256_characters_are_refused(secret, length):
    with pytest.raises(ConfigError) as refused:
        parse_apps_yaml(one_role(secret))
    message = str(refused.value)
    assert f"app 'k' (line 2): role 'r' (line 4): its secret is {length} characters" in message
    assert "--allow-legacy-secrets" in message
    assert secret not in message  # never the secret itself


@pytest.mark.parametrize("secret", ["a" * 16, "b" * 256])
def test_secrets_of_16_and_256_characters_are_accepted(secret):
    [app] = parse_apps_yaml(one_role(secret))
    assert app.roles["r"].secret == secret


def test_legacy_secrets_are_accepted_when_allowed_with_a_warning(caplog):
    parsed = read_apps_yaml(one_role("abc"), allow_legacy_secrets=True)
    assert parsed.apps[0].roles["r"].secret == "abc"
    assert parsed.warnings == [
        "app 'k' (line 2): role 'r' (line 4): its secret is 3 characters, fewer than 16; "
        "accepted as a legacy secret"
    ]
    with caplog.at_level("WARNING", logger="app.config_store.apps_yaml"):
        parse_apps_yaml(one_role("abc"), allow_legacy_secrets=True)
    assert "role 'r' (line 4): its secret is 3 characters" in caplog.text


def test_duplicate_app_keys_are_refused_with_both_lines():
    text = one_role("s" * 20) + "  k:\n    roles: {}\n"
    with pytest.raises(ConfigError, match=r"duplicate app key 'k' at line 5 \(first at line 2\)"):
        parse_apps_yaml(text)


def test_duplicate_role_names_in_an_app_are_refused_with_both_lines():
    text = one_role("s" * 20) + "      r: {secret: " + "t" * 20 + "}\n"
    with pytest.raises(ConfigError, match=r"duplicate role 'r' in app 'k' at line 5 \(first at line 4\)"):
        parse_apps_yaml(text)


def test_duplicate_keys_elsewhere_are_refused_too():
    text = "apps:\n  k:\n    settings: {history_max_length: 1, history_max_length: 2}\n"
    with pytest.raises(
        ConfigError, match=r"duplicate key 'history_max_length' under apps\.k\.settings at line 3"
    ):
        parse_apps_yaml(text)


def test_aliases_are_not_duplicates_and_stay_linear():
    text = "a: &a ['x','x']\nb: &b [*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b]\napps: {}\n"
    assert parse_apps_yaml(text) == []


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("select nonsense from where", "'where' at position 21 is a StreamSQL keyword, not a channel name"),
        ("select * from", "unexpected end of filter at position 13 (expected a channel name)"),
        ("select a from `c` where", "at position 23 (expected a condition)"),
    ],
)
def test_invalid_republish_rules_are_refused_with_the_parsers_message(expression, reason):
    text = f"apps:\n  k:\n    settings:\n      republish_rules: [{{expression: '{expression}', target: t}}]\n"
    with pytest.raises(ConfigError) as refused:
        parse_apps_yaml(text)
    assert f"app 'k' (line 2): republish rule 1 ('{expression}'): " in str(refused.value)
    assert reason in str(refused.value)


def test_a_backticked_keyword_is_a_channel_name():
    rule = RepublishRule("select * from `where`", "t")
    assert compile_rule(rule).channel == "where"


def test_a_role_without_permissions_is_accepted_with_a_warning():
    parsed = read_apps_yaml(one_role("s" * 20, permissions="[]"))
    assert parsed.apps[0].roles["r"].permissions == ()
    assert parsed.warnings == [
        "app 'k' (line 2): role 'r' has no permissions: its clients can authenticate but do nothing"
    ]
    assert read_apps_yaml(one_role("s" * 20)).warnings == []
