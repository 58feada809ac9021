"""Natural batching of publishes, without a socket: a lone publish goes at once, publishes made while a
batch is in flight go together as the next one (at most batch_max), replies reach their own callbacks in
order, and a lost connection fails what was sent and what was queued."""

from __future__ import annotations

from app.engine.batching import UNAVAILABLE, PublishBatches


class Wire:
    """What the socket side was handed to send."""

    def __init__(self):
        self.sent = []

    def __call__(self, batch):
        self.sent.append([command for command, _ in batch])


def open_batches(batch_max=2000):
    wire = Wire()
    batches = PublishBatches(batch_max, wire)
    batches.open = True
    return batches, wire


def reply_all(batches, make_reply=lambda command: b"ok " + command):
    """The socket side reading one reply per command of the batch in flight."""
    assert batches.answer_replies([make_reply(command) for command, _ in batches.unanswered()])
    return batches.batch_done()


def test_a_publish_to_an_idle_pipe_is_sent_at_once():
    batches, wire = open_batches()
    batches.submit(b"c1", lambda reply: None)
    assert wire.sent == [[b"c1"]]
    assert not batches.idle and batches.queued == 1


def test_publishes_made_while_a_batch_is_in_flight_wait_and_go_as_one_batch():
    batches, wire = open_batches()
    batches.submit(b"c0", lambda reply: None)
    for i in range(1, 6):
        batches.submit(b"c%d" % i, lambda reply: None)
    assert wire.sent == [[b"c0"]]  # nothing more until the first batch is answered
    assert batches.queued == 6
    assert reply_all(batches) == 1
    assert batches.next_batch()
    assert wire.sent[1] == [b"c1", b"c2", b"c3", b"c4", b"c5"]


def test_a_batch_takes_at_most_batch_max():
    batches, _wire = open_batches(batch_max=3)
    batches.submit(b"first", lambda reply: None)
    for i in range(7):
        batches.submit(b"q%d" % i, lambda reply: None)
    reply_all(batches)
    sizes = []
    while batches.next_batch():
        sizes.append(reply_all(batches))
    assert sizes == [3, 3, 1]
    assert batches.idle


def test_replies_reach_their_own_callbacks_in_order():
    batches, _wire = open_batches()
    got = []
    batches.submit(b"a", lambda reply: got.append(("a", reply)))
    batches.submit(b"b", lambda reply: got.append(("b", reply)))
    batches.submit(b"c", lambda reply: got.append(("c", reply)))
    reply_all(batches)
    batches.next_batch()
    reply_all(batches)
    assert got == [("a", b"ok a"), ("b", b"ok b"), ("c", b"ok c")]


def test_nothing_queued_means_no_next_batch():
    batches, wire = open_batches()
    assert batches.idle and not batches.next_batch()
    assert wire.sent == []


def test_a_closed_pipe_refuses_at_once():
    batches, wire = open_batches()
    batches.open = False
    got = []
    batches.submit(b"c", got.append)
    assert got == [UNAVAILABLE] and wire.sent == [] and batches.idle


def test_losing_the_connection_fails_the_unanswered_and_the_queued_but_not_the_answered():
    batches, _wire = open_batches()
    got = {}
    for name in ("sent-1", "sent-2"):
        batches.submit(name.encode(), lambda reply, name=name: got.setdefault(name, reply))
    reply_all(batches)
    batches.next_batch()  # sent-2 is in flight
    batches.submit(b"queued", lambda reply: got.setdefault("queued", reply))
    [(command, _callback)] = batches.unanswered()
    assert command == b"sent-2"
    batches.fail_all()
    assert got == {"sent-1": b"ok sent-1", "sent-2": UNAVAILABLE, "queued": UNAVAILABLE}
    assert batches.idle and batches.queued == 0 and not batches.open


def test_a_loss_in_the_middle_of_a_batch_fails_only_what_had_no_reply():
    batches, _wire = open_batches()
    got = []
    batches.submit(b"x", lambda reply: None)
    for i in range(3):
        batches.submit(b"%d" % i, lambda reply, i=i: got.append((i, reply)))
    reply_all(batches)
    batches.next_batch()
    assert len(batches.unanswered()) == 3
    assert not batches.answer_replies([b"stored"])  # the first of three
    batches.fail_all()
    assert got == [(0, b"stored"), (1, UNAVAILABLE), (2, UNAVAILABLE)]


def test_queued_counts_what_is_not_answered_yet():
    batches, _wire = open_batches()
    for i in range(4):
        batches.submit(b"%d" % i, lambda reply: None)
    assert batches.queued == 4
    assert len(batches.unanswered()) == 1
    assert batches.answer_replies([b"ok"])
    assert batches.queued == 3
    batches.batch_done()
    batches.next_batch()
    assert batches.queued == 3


def test_a_failing_callback_does_not_stop_the_others():
    batches, _wire = open_batches()
    got = []

    def broken(reply):
        raise RuntimeError("bug in a callback")

    batches.submit(b"a", broken)
    batches.submit(b"b", got.append)
    reply_all(batches)
    batches.next_batch()
    reply_all(batches)
    assert got == [b"ok b"]


def test_replies_beyond_the_batch_in_flight_are_refused_before_any_is_answered():
    batches, _wire = open_batches()
    got = []
    batches.submit(b"only", got.append)
    try:
        batches.answer_replies([b"one", b"two"])
    except ValueError:
        pass
    else:
        raise AssertionError("two replies for one command were taken")
    assert got == [] and batches.answered == 0


def test_fix_may_replace_a_reply_before_its_callback_sees_it():
    batches, _wire = open_batches()
    got = []
    batches.submit(b"cmd", got.append)
    assert batches.answer_replies([b"stale"], lambda command, reply: command + b" fixed")
    assert got == [b"cmd fixed"]
