"""The per-app ``durability`` setting: model, apps.yaml, CLI parsing, and the publish policy it becomes."""

from __future__ import annotations

import pytest

from app.cli.app_commands import parse_durability
from app.config_store import dump_apps_yaml, parse_apps_yaml
from app.models import App, AppSettings, ConfigSnapshot
from app.services import ConfigView
from app.settings import Settings


def test_leader_is_the_default_and_an_unknown_mode_is_refused():
    assert App("a").durability == "leader"
    with pytest.raises(ValueError):
        App("a", durability="quorum")


def test_durability_is_stored_among_the_settings_and_read_back():
    app = App("a", settings=AppSettings(min_replicas=2), durability="replicated")
    assert app.to_dict()["settings"]["durability"] == "replicated"
    assert App.from_dict(app.to_dict()) == app
    assert App.from_dict({"key": "a", "settings": {}}).durability == "leader"  # stored by older panels


def test_durability_survives_apps_yaml():
    app = App("a", settings=AppSettings(min_replicas=2, replication_timeout=0.5), durability="replicated")
    [back] = parse_apps_yaml(dump_apps_yaml([app]))
    assert back == app


def test_the_cli_reads_durability_apart_from_the_numbers():
    assert parse_durability("durability=replicated") == "replicated"
    assert parse_durability("durability=default") == "leader"
    assert parse_durability("min_replicas=2") is None
    with pytest.raises(ValueError):
        parse_durability("durability=quorum")


def policy_of(app: App):
    view = ConfigView(Settings(), ConfigSnapshot(apps={app.key: app}))
    return view.history_policy(app.key)


def test_leader_publishes_wait_for_no_replica():
    assert policy_of(App("a", settings=AppSettings(min_replicas=3))).min_replicas == 0


def test_replicated_defaults_to_one_replica_within_one_second():
    policy = policy_of(App("a", durability="replicated"))
    assert (policy.min_replicas, policy.replication_timeout_ms) == (1, 1000)


def test_replicated_uses_the_apps_own_replicas_and_timeout():
    app = App("a", settings=AppSettings(min_replicas=2, replication_timeout=0.25), durability="replicated")
    policy = policy_of(app)
    assert (policy.min_replicas, policy.replication_timeout_ms) == (2, 250)
