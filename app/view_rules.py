"""Republish rules that are aggregated views (PROTOCOL §12): one process of the cluster aggregates each.

A plain rule runs where the publish arrives (:mod:`app.engine.republish`): every message is on exactly one
process once. A view rule cannot: each process sees only its own publishes at publish time, so each would
publish a partial summary. Instead, exactly one broker process holds a **lease** per (app, rule) in the
config Redis and runs the rule as an ordinary view subscriber of its engine (it gets every message of the
source channel through Redis, like any subscriber, and shares the window with this process's clients of the
same view); at the end of each window it publishes the rows to the target channel as ONE message
``{"messages": [row, ...]}`` (plus ``"dropped_groups": n`` when some messages were not counted), so a
subscriber of the target with a filter sees each row, as PROTOCOL §6 treats a batch.

=====================================================  =======  =========================================
key                                                    type     content
=====================================================  =======  =========================================
``cobra:views:lease:<app>:<rule id>``                  string   ``<node> <token>`` of the holder, PX TTL
=====================================================  =======  =========================================

The lease is taken with ``SET NX PX`` and renewed every :data:`RENEW_INTERVAL` by its holder (a script that
extends it only if the value is still ours); a holder that dies stops renewing, the key expires after
:data:`LEASE_TTL_MS` and the next process to try takes the rule over: a rule moves within about
``LEASE_TTL_MS + RENEW_INTERVAL`` (4 s). A holder that cannot renew (Redis away, the lease taken) stops
aggregating at once, so two processes publish the same window only if one's clock-driven push races the
other's takeover within one renewal. The taker's first window is partial (it subscribed mid-window).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import orjson
import redis

from . import protocol
from .channels import channel_key
from .engine.errors import EngineError
from .models import ConfigSnapshot, RepublishRule, compile_rule
from .stream_sql import FilterError, StreamFilter
from .subscription import Subscription

if TYPE_CHECKING:
    from .engine.history import HistoryPolicy
    from .engine.interface import EngineAPI

log = logging.getLogger(__name__)

LEASE_KEY = "cobra:views:lease:"
LEASE_TTL_MS = 3000
RENEW_INTERVAL = 1.0

# Extend / delete the lease only while it is still ours: a holder that was too slow must not extend or
# delete the lease another process took after it expired.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def rule_id(rule: RepublishRule) -> str:
    """A stable name for a rule (its expression and target): the same on every process."""
    return hashlib.sha1(f"{rule.expression}\0{rule.target}".encode()).hexdigest()[:16]


def lease_key(app_key: str, rule: RepublishRule) -> str:
    return f"{LEASE_KEY}{app_key}:{rule_id(rule)}"


def view_rules(snapshot: ConfigSnapshot) -> dict[str, tuple[str, RepublishRule, StreamFilter]]:
    """The config's view rules by lease key: (app key, rule, compiled view). Invalid rules are skipped (and
    logged by :mod:`app.engine.republish`, which sees the same rules)."""
    found: dict[str, tuple[str, RepublishRule, StreamFilter]] = {}
    for app in snapshot.apps.values():
        for rule in app.settings.republish_rules:
            try:
                stream_filter = compile_rule(rule)
            except (FilterError, ValueError):
                continue
            if stream_filter.view is not None:
                found[lease_key(app.key, rule)] = (app.key, rule, stream_filter)
    return found


class _RuleSink:
    """Where the rule's view subscription pushes: each window's rows become one publish to the target."""

    __slots__ = ("held",)

    def __init__(self, held: _HeldRule) -> None:
        self.held = held

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        self.send_payload(b"".join((protocol.PUSH_HEAD, str(counter).encode(), subscription_part, tail)))

    def send_payload(self, payload: bytes) -> None:
        self.held.runner._window_pushed(self.held, orjson.loads(payload))


@dataclass(eq=False)
class _HeldRule:
    runner: ViewRuleRunner
    app_key: str
    rule: RepublishRule
    stream_filter: StreamFilter
    subscription: Subscription | None = None
    published: int = 0  # windows published to the target


class ViewRuleRunner:
    """Takes, renews and gives back the leases of the config's view rules; runs the rules it holds.

    ``snapshot`` is the config the broker routes by, ``policy`` the target's history policy (per app),
    ``node`` names this process in the lease (for an operator reading Redis)."""

    def __init__(
        self,
        client: redis.Redis,
        engine: EngineAPI,
        snapshot: Callable[[], ConfigSnapshot],
        policy: Callable[[str], HistoryPolicy],
        node: Callable[[], str],
        max_groups: Callable[[], int],
    ) -> None:
        self.client = client
        self.engine = engine
        self.snapshot = snapshot
        self.policy = policy
        self.node = node
        self.max_groups = max_groups
        self.token = uuid.uuid4().hex  # this process's lease value (with its node name)
        self.held: dict[str, _HeldRule] = {}
        self.failures = 0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._greenlet: gevent.Greenlet | None = None
        self._logged_at = 0.0

    @property
    def lease_value(self) -> str:
        return f"{self.node()} {self.token}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop aggregating and give the leases back, so another process takes over at once."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        for key in list(self.held):
            self._drop(key, release=True)

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except redis.RedisError as exc:
                # The config Redis is away: we cannot prove we hold anything, so we run nothing.
                log.warning("view rules: config Redis away, pausing %d rule(s): %s", len(self.held), exc)
                for key in list(self.held):
                    self._drop(key, release=False)
            except Exception:
                log.exception("view rules: unexpected failure")
            gevent.sleep(RENEW_INTERVAL)

    def tick(self) -> None:
        """One round: renew what we hold (dropping what we lost or what the config removed), try to take
        every other view rule, and subscribe the rules we hold (again, after a shard failure)."""
        wanted = view_rules(self.snapshot())
        value = self.lease_value
        for key in list(self.held):
            held = self.held[key]
            current = wanted.get(key)
            if current is None:  # the rule was removed (its key names its expression and target)
                self._drop(key, release=True)
            elif not self._renew(keys=[key], args=[value, LEASE_TTL_MS]):
                log.warning("view rules: lost the lease of %s (%s)", key, held.rule.expression)
                self._drop(key, release=False)
        for key, (app_key, rule, stream_filter) in wanted.items():
            if key not in self.held and self.client.set(key, value, nx=True, px=LEASE_TTL_MS):
                log.info("view rules: %s aggregates %r -> %s", self.node(), rule.expression, rule.target)
                self.held[key] = _HeldRule(self, app_key, rule, stream_filter)
        for held in self.held.values():
            if held.subscription is None:
                self._subscribe(held)

    def _subscribe(self, held: _HeldRule) -> None:
        source = held.stream_filter.channel
        sub = Subscription(
            _RuleSink(held),
            f"view-rule-{rule_id(held.rule)}",
            source,
            channel_key(held.app_key, source),
            held.stream_filter,
            max_groups=self.max_groups(),
        )
        try:
            self.engine.subscribe(sub, replay=False)
        except EngineError as exc:  # its shard is down: tried again next round, the lease kept
            log.warning("view rules: cannot subscribe %s yet: %s", source, exc.message)
            return
        held.subscription = sub

    def _drop(self, key: str, release: bool) -> None:
        held = self.held.pop(key, None)
        if held is None:
            return
        if held.subscription is not None:
            self.engine.unsubscribe(held.subscription)
            held.subscription = None
        if release:
            try:
                self._release(keys=[key], args=[self.lease_value])
            except redis.RedisError as exc:  # it expires by itself
                log.warning("view rules: cannot release %s: %s", key, exc)

    # ------------------------------------------------------------------ the windows
    def _window_pushed(self, held: _HeldRule, document: dict[str, Any]) -> None:
        body = document.get("body") or {}
        if document.get("action") != "rtm/subscription/data":
            # The engine interrupted the source (a shard outage); the subscription resumes by itself.
            log.info("view rule %r: %s", held.rule.expression, body.get("error"))
            return
        if held.subscription is None or self.held.get(lease_key(held.app_key, held.rule)) is not held:
            return  # dropped meanwhile: the new holder publishes this window
        summary: dict[str, Any] = {"messages": body["messages"]}
        if body.get("dropped_groups"):
            summary["dropped_groups"] = body["dropped_groups"]
        held.published += 1
        target = channel_key(held.app_key, held.rule.target)
        self.engine.publish(target, orjson.dumps(summary), self.policy(held.app_key), self._done)

    def _done(self, result: Any) -> None:
        if not isinstance(result, EngineError):
            return
        self.failures += 1
        now = time.monotonic()
        if now - self._logged_at >= 10.0:
            self._logged_at = now
            log.warning("view rule publish failed (%d so far): %s", self.failures, result.message)
