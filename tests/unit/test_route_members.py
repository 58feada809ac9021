"""Route members: O(1) subscribe/unsubscribe with a tuple snapshot for fan-out (app.engine.routes)."""

from app.engine.routes import Members


class Sub:  # a subscription stand-in: Members only needs identity
    pass


def test_snapshot_keeps_subscription_order_and_follows_changes():
    members = Members()
    a, b, c = Sub(), Sub(), Sub()
    for sub in (a, b, c):
        members.add(sub)
    assert members.snapshot == (a, b, c) and len(members) == 3
    members.discard(b)
    assert members.snapshot == (a, c)
    members.add(b)
    assert list(members) == [a, c, b]


def test_snapshot_is_reused_until_a_change():
    members = Members()
    members.add(Sub())
    first = members.snapshot
    assert members.snapshot is first
    members.discard(Sub())  # not a member: nothing changes
    assert members.snapshot is first
    members.add(Sub())
    assert members.snapshot is not first and len(members.snapshot) == 2


def test_removing_while_fanning_out_does_not_disturb_the_loop():
    members = Members()
    subs = [Sub() for _ in range(5)]
    for sub in subs:
        members.add(sub)
    seen = []
    for sub in members:
        seen.append(sub)
        members.discard(subs[4])  # a shed slow consumer leaves mid-delivery
    assert seen == subs and len(members) == 4 and not Members()
