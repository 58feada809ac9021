"""View republish rules: accepted where rules are validated, kept out of the publish-time republisher, and
named the same way on every process (the lease key)."""

from __future__ import annotations

from app.engine.republish import AppRules
from app.models import App, AppSettings, ConfigSnapshot, RepublishRule, compile_rule
from app.view_rules import LEASE_KEY, lease_key, rule_id, view_rules

VIEW_RULE = RepublishRule("select device.model, count(*) as n from `fps` group by device.model", "fps_sum")
PLAIN_RULE = RepublishRule("select * from `fps` where data.fps < 30", "slow_frames")


def snapshot(*rules: RepublishRule) -> ConfigSnapshot:
    return ConfigSnapshot(apps={"game": App(key="game", settings=AppSettings(republish_rules=rules))})


def test_a_view_rule_compiles_where_rules_are_validated():
    compiled = compile_rule(VIEW_RULE)
    assert compiled.view is not None and compiled.channel == "fps"


def test_the_publish_time_republisher_leaves_view_rules_out():
    rules = AppRules("game", (VIEW_RULE, PLAIN_RULE))
    assert [target for _, target in rules.by_channel["fps"]] == ["slow_frames"]


def test_only_view_rules_get_a_lease():
    found = view_rules(snapshot(VIEW_RULE, PLAIN_RULE))
    assert list(found) == [lease_key("game", VIEW_RULE)]
    app_key, rule, compiled = found[lease_key("game", VIEW_RULE)]
    assert (app_key, rule, compiled.channel) == ("game", VIEW_RULE, "fps")


def test_the_lease_key_names_the_app_and_the_rule():
    assert lease_key("game", VIEW_RULE) == f"{LEASE_KEY}game:{rule_id(VIEW_RULE)}"
    assert rule_id(VIEW_RULE) == rule_id(RepublishRule(VIEW_RULE.expression, VIEW_RULE.target))
    assert rule_id(VIEW_RULE) != rule_id(RepublishRule(VIEW_RULE.expression, "other"))


def test_an_invalid_rule_gets_no_lease():
    assert view_rules(snapshot(RepublishRule("select count(*) from `fps`", "fps"))) == {}
