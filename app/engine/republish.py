"""Republish rules: a busy channel feeding small specialised ones, inside the broker.

A rule (per app, in the config store) is a StreamSQL expression and a target channel: every message
published to the expression's FROM channel that matches its WHERE is also published, projected by its
SELECT, to the target channel of the same app. The republished message is published straight to the
engine, never through the rules again, so rules cannot loop or chain.

Cost: an app without rules pays one attribute test per publish; a channel without rules one dict lookup.
Rules are compiled once per config version (``compile_filter`` caches identical text), and a message is
never re-parsed: the rules run on the value the publish request already decoded.

A rule that is an aggregated view (PROTOCOL §12) is not run here, at publish time, where it would see only
this process's publishes: :mod:`app.view_rules` runs it on one process of the cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..channels import channel_key
from ..models import App, AppSettings, RepublishRule, compile_rule
from ..stream_sql import FilterError, StreamFilter
from .errors import EngineError
from .history import HistoryPolicy

if TYPE_CHECKING:
    from .interface import EngineAPI

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]


class AppRules:
    """One app's rules, by source channel."""

    def __init__(self, app_key: str, rules: tuple[RepublishRule, ...]) -> None:
        self.app_key = app_key
        self.by_channel: dict[str, list[tuple[StreamFilter, str]]] = {}
        for rule in rules:
            try:
                stream_filter = compile_rule(rule)
            except (FilterError, ValueError) as exc:
                # The CLI validates rules; one written by hand into the store must not break publishing.
                log.error("app %s: ignoring republish rule %r: %s", app_key, rule.expression, exc)
                continue
            if stream_filter.view is not None:
                continue  # an aggregated view: one process of the cluster runs it (app.view_rules)
            self.by_channel.setdefault(stream_filter.channel, []).append((stream_filter, rule.target))


class Republisher:
    """Republishing on top of any engine: compiled rules per app, and the follow-up publishes."""

    def __init__(self, engine: EngineAPI) -> None:
        self.engine = engine
        self.failures = 0
        self._apps: dict[str, tuple[AppSettings, AppRules]] = {}
        self._logged_at = 0.0

    def rules_for(self, app: App | None) -> AppRules | None:
        """The app's compiled rules, or None when it has none (the common, cheap case)."""
        if app is None or not app.settings.republish_rules:
            return None
        cached = self._apps.get(app.key)
        # A new config version brings new AppSettings objects: identity says whether to recompile.
        if cached is None or cached[0] is not app.settings:
            cached = self._apps[app.key] = (app.settings, AppRules(app.key, app.settings.republish_rules))
        return cached[1]

    def after_publish(
        self, rules: AppRules, channel: str, message: Any, policy: HistoryPolicy, callback: Callback
    ) -> Callback:
        """``callback``, preceded by the channel's republishes once the original publish succeeded (a
        publish that failed is not republished either)."""
        channel_rules = rules.by_channel.get(channel)
        if not channel_rules:
            return callback

        def republish_then_reply(result: Any) -> None:
            if not isinstance(result, EngineError):
                self._republish(rules.app_key, channel_rules, message, policy)
            callback(result)

        return republish_then_reply

    def _republish(
        self, app_key: str, channel_rules: list[tuple[StreamFilter, str]], message: Any, policy: HistoryPolicy
    ) -> None:
        batch = type(message) is dict and type(message.get("messages")) is list and bool(message["messages"])
        for stream_filter, target in channel_rules:
            try:
                results = stream_filter.apply(message)
            except Exception:
                log.exception("app %s: republish rule %r failed", app_key, stream_filter.text)
                continue
            if not results:
                continue
            # A batch stays a batch (PROTOCOL §6 filters its elements); a single message stays single.
            projected = {"messages": results} if batch else results[0]
            self.engine.publish(channel_key(app_key, target), orjson.dumps(projected), policy, self._done)

    def _done(self, result: Any) -> None:
        if not isinstance(result, EngineError):
            return
        self.failures += 1
        now = time.monotonic()
        if now - self._logged_at >= 10.0:  # a shard outage must not turn into one log line per message
            self._logged_at = now
            log.warning("republish failed (%d so far): %s", self.failures, result.message)
