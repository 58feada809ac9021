"""``redis+cluster://`` shard URLs (app.redis_cluster_url) and the shard model accepting them."""

from __future__ import annotations

import pytest

from app.models import Shard
from app.redis_cluster_url import ClusterURL, display_url, is_cluster_url, parse_cluster_url


def test_seeds_in_order() -> None:
    parsed = parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,h3")
    assert parsed == ClusterURL((("10.0.0.1", 7000), ("10.0.0.2", 7001), ("h3", 6379)))


def test_password_only_and_user_with_password() -> None:
    assert parse_cluster_url("redis+cluster://:s%40cret@h:1").password == "s@cret"
    parsed = parse_cluster_url("redis+cluster://alice:pw@h:1")
    assert (parsed.username, parsed.password) == ("alice", "pw")


def test_ipv6_seed() -> None:
    assert parse_cluster_url("redis+cluster://[::1]:7000").seeds == (("::1", 7000),)


def test_trailing_slash_is_fine_but_a_database_is_refused() -> None:
    assert parse_cluster_url("redis+cluster://h:1/").seeds == (("h", 1),)
    with pytest.raises(ValueError, match="single database"):
        parse_cluster_url("redis+cluster://h:1/2")


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://h:1,,h:2",
        "redis+cluster://h:notaport",
        "redis+cluster://h:0",
        "redis+cluster://h:70000",
        "redis+cluster://h:1?timeout=3",
        "redis+cluster://h:1,h:1",
        "redis://h:1",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_cluster_url(url)


def test_node_urls_carry_the_credentials() -> None:
    parsed = parse_cluster_url("redis+cluster://:p%2Fw@h:1")
    assert parsed.node_url("127.0.0.1", 7002) == "redis://:p%2Fw@127.0.0.1:7002/0"
    assert parse_cluster_url("redis+cluster://h:1").node_url("::1", 7) == "redis://[::1]:7/0"


def test_display_hides_the_password() -> None:
    assert display_url("redis+cluster://:pw@a:1,b:2") == "redis+cluster://:***@a:1,b:2"
    assert display_url("redis+cluster://a:1") == "redis+cluster://a:1"


def test_a_shard_accepts_a_cluster_url_and_refuses_a_bad_one() -> None:
    assert is_cluster_url(Shard("c", "redis+cluster://h:1,h:2").url)
    with pytest.raises(ValueError, match="port"):
        Shard("c", "redis+cluster://h:x")
    with pytest.raises(ValueError, match=r"redis\+cluster://"):
        Shard("c", "http://h:1")


def test_several_seeds_mixing_names_ipv4_and_ipv6() -> None:
    parsed = parse_cluster_url("redis+cluster://[::1]:7000,10.0.0.1:7001,h3,[fe80::2]")
    assert parsed.seeds == (("::1", 7000), ("10.0.0.1", 7001), ("h3", 6379), ("fe80::2", 6379))


def test_a_lone_userinfo_is_the_password_an_empty_one_none_and_the_last_at_ends_it() -> None:
    assert parse_cluster_url("redis+cluster://secret@h:1").password == "secret"
    assert parse_cluster_url("redis+cluster://@h:1").password is None
    assert parse_cluster_url("redis+cluster://:p@ss@h:1").password == "p@ss"
    assert parse_cluster_url("redis+cluster://alice:pw@h:1").node_url("h", 1) == "redis://alice:pw@h:1/0"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://[::1", "IPv6"),  # unclosed bracket
        ("redis+cluster://[::1]7000", "IPv6"),  # no colon before the port
        ("redis+cluster://[]:7000", "no host"),
        ("redis+cluster://h:1,h:1", "twice"),
        ("redis+cluster://h:1/0", "single database"),
        ("redis+cluster://h:1#x", "no query options or fragment"),
        ("redis+cluster://h:65536", "between 1 and 65535"),
    ],
)
def test_the_refusal_says_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_cluster_url(url)


def test_display_hides_a_lone_password_and_a_user_s_password() -> None:
    assert display_url("redis+cluster://secret@a:1") == "redis+cluster://***@a:1"
    assert display_url("redis+cluster://alice:pw@a:1,b:2") == "redis+cluster://alice:***@a:1,b:2"
