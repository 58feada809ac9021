"""``redis+sentinel://`` shard URLs (app/engine/sentinel_url.py): one test per rule of the format."""

from __future__ import annotations

import pytest

from app.engine.sentinel_url import SentinelURL, hide_sentinel_password, parse_sentinel_url
from app.models import Shard


def test_hosts_master_name_and_default_db():
    parsed = parse_sentinel_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster")
    assert parsed == SentinelURL(sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380)), master_name="mymaster")


def test_a_host_without_port_gets_the_sentinel_port():
    assert parse_sentinel_url("redis+sentinel://s1,s2:5000/m").sentinels == (("s1", 26379), ("s2", 5000))


def test_the_db_follows_the_master_name():
    assert parse_sentinel_url("redis+sentinel://s1/m/3").db == 3


def test_the_password_before_the_hosts_is_the_data_nodes_and_sentinel_password_the_sentinels():
    parsed = parse_sentinel_url("redis+sentinel://:p%40ss@s1:1/m?sentinel_password=sp")
    assert (parsed.username, parsed.password, parsed.sentinel_password) == (None, "p@ss", "sp")
    assert parsed.node_url(("h", 7)) == "redis://:p%40ss@h:7/0"
    assert parsed.sentinel_url(("s1", 1)) == "redis://:sp@s1:1/0"


def test_without_passwords_the_node_urls_carry_none():
    parsed = parse_sentinel_url("redis+sentinel://s1/m/2")
    assert parsed.node_url(("h", 7)) == "redis://h:7/2"
    assert parsed.sentinel_url(("s1", 26379)) == "redis://s1:26379/0"


def test_ipv6_sentinels_in_brackets():
    parsed = parse_sentinel_url("redis+sentinel://[::1]:26379,[::2]/m")
    assert parsed.sentinels == (("::1", 26379), ("::2", 26379))
    assert parsed.node_url(("::1", 6379)) == "redis://[::1]:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis://s1/m",  # not this scheme
        "redis+sentinel://s1",  # no master name
        "redis+sentinel://s1/",  # no master name
        "redis+sentinel://s1/m/x",  # db not a number
        "redis+sentinel://s1/m/1/2",  # too many path segments
        "redis+sentinel://s1:0/m",  # port out of range
        "redis+sentinel://s1:abc/m",  # port not a number
        "redis+sentinel://s1,,s2/m",  # empty host
        "redis+sentinel://:1/m",  # no host
        "redis+sentinel://s1/m?retries=3",  # unknown option
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url):
    with pytest.raises(ValueError):
        parse_sentinel_url(url)


def test_a_shard_accepts_a_sentinel_url_and_refuses_a_broken_one():
    assert Shard("ha", "redis+sentinel://s1,s2/m").url.startswith("redis+sentinel://")
    with pytest.raises(ValueError):
        Shard("ha", "redis+sentinel://s1")


def test_both_passwords_are_hidden_when_printed():
    shown = hide_sentinel_password("redis+sentinel://:secret@s1:1,s2:2/m/1?sentinel_password=other")
    assert "secret" not in shown and "other" not in shown
    assert shown == "redis+sentinel://:***@s1:1,s2:2/m/1?sentinel_password=***"


def test_a_user_with_a_password_for_the_nodes_and_a_sentinel_user():
    parsed = parse_sentinel_url("redis+sentinel://alice:pw@s1/m?sentinel_username=sam&sentinel_password=sp")
    assert (parsed.username, parsed.password) == ("alice", "pw")
    assert parsed.node_url(("h", 7)) == "redis://alice:pw@h:7/0"
    assert parsed.sentinel_url(("s1", 26379)) == "redis://sam:sp@s1:26379/0"


def test_a_lone_userinfo_is_the_password_and_an_empty_one_is_none():
    assert parse_sentinel_url("redis+sentinel://secret@s1/m").password == "secret"
    assert parse_sentinel_url("redis+sentinel://@s1/m").password is None
    assert parse_sentinel_url("redis+sentinel://@s1/m").node_url(("h", 7)) == "redis://h:7/0"


def test_an_unencoded_at_sign_in_the_password_and_percent_encoded_query_values():
    # The last "@" ends the userinfo; a query value is percent-decoded ("+" is a space there, as in
    # every query string: a "+" in a password is written %2B).
    parsed = parse_sentinel_url("redis+sentinel://:p@ss@s1/m?sentinel_password=a%26b%2Bc")
    assert (parsed.password, parsed.sentinel_password) == ("p@ss", "a&b+c")


def test_the_master_name_is_percent_decoded_and_the_db_may_be_large():
    parsed = parse_sentinel_url("redis+sentinel://s1/my%20master/15")
    assert (parsed.master_name, parsed.db) == ("my master", 15)


def test_several_hosts_mixing_names_ipv4_and_ipv6_keep_their_order():
    parsed = parse_sentinel_url("redis+sentinel://[::1]:5000,10.0.0.1,s3:26380/m")
    assert parsed.sentinels == (("::1", 5000), ("10.0.0.1", 26379), ("s3", 26380))
    assert parsed.sentinel_url(("::1", 5000)) == "redis://[::1]:5000/0"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://[::1/m", "IPv6"),  # unclosed bracket
        ("redis+sentinel://[::1]x/m", "bad Sentinel address"),
        ("redis+sentinel://[]:1/m", "IPv4 or IPv6"),  # empty brackets
        ("redis+sentinel://s1:65536/m", "port"),
        ("redis+sentinel://s1/m/-1", "non-negative"),
        ("redis+sentinel://s1/m#part", "fragment"),
        ("redis+sentinel://s1/m?sentinel_pasword=x", "unknown option"),
        ("redis+sentinel://s1", "MASTER_NAME"),
    ],
)
def test_the_refusal_says_what_is_wrong(url, reason):
    with pytest.raises(ValueError, match=reason):
        parse_sentinel_url(url)


def test_hiding_leaves_a_url_without_passwords_as_it_is_and_hides_a_lone_password():
    assert hide_sentinel_password("redis+sentinel://s1,s2/m") == "redis+sentinel://s1,s2/m"
    assert hide_sentinel_password("redis+sentinel://secret@s1/m") == "redis+sentinel://:***@s1/m"
    shown = hide_sentinel_password("redis+sentinel://s1/m?sentinel_username=u&sentinel_password=x")
    assert shown == "redis+sentinel://s1/m?sentinel_username=u&sentinel_password=***"
