"""Replicated publishes in the pipelined batches (app/engine/batching.py): one WAIT closes each batch."""

from __future__ import annotations

from app.engine.batching import UNAVAILABLE, NotReplicated, PublishBatches

WAIT_2_1000 = b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$4\r\n1000\r\n"


def open_batches():
    sent = []
    batches = PublishBatches(2000, lambda batch: sent.append([command for command, _ in batch]))
    batches.open = True
    return batches, sent


def reply(batches, answers):
    """Feed the batch in flight one reply per command, from ``answers`` (by command)."""
    assert batches.answer_replies([answers(command) for command, _ in batches.unanswered()])
    batches.batch_done()


def test_a_lone_replicated_publish_goes_out_with_its_wait_in_one_batch():
    batches, sent = open_batches()
    batches.submit_replicated(b"p1", lambda r: None, 2, 1000)
    assert sent == [[b"p1", WAIT_2_1000]]


def test_replicated_publishes_queued_together_share_one_wait_at_the_end():
    batches, sent = open_batches()
    batches.submit(b"busy", lambda r: None)
    for i in range(3):
        batches.submit_replicated(b"p%d" % i, lambda r: None, 2, 1000)
    batches.submit(b"leader", lambda r: None)  # a leader publish needs no WAIT: it may follow it
    batches.submit_replicated(b"p3", lambda r: None, 2, 1000)
    reply(batches, lambda c: b"ok")
    assert batches.next_batch()
    assert sent[1] == [b"p0", b"p1", b"p2", WAIT_2_1000, b"leader", b"p3", WAIT_2_1000]


def test_the_ack_waits_for_wait_and_carries_the_publish_reply():
    batches, _sent = open_batches()
    got = []
    batches.submit_replicated(b"p1", got.append, 2, 1000)
    [(_command, _callback), (wait, _on_wait)] = batches.unanswered()
    assert wait == WAIT_2_1000
    assert not batches.answer_replies([b"1-0"])
    assert got == []  # stored on the master is not acknowledged yet
    assert batches.answer_replies([2])
    assert got == [b"1-0"]


def test_too_few_replicas_in_time_is_not_replicated():
    batches, _sent = open_batches()
    got = []
    batches.submit_replicated(b"p1", got.append, 2, 1000)
    reply(batches, lambda c: 1 if c == WAIT_2_1000 else b"1-0")
    [outcome] = got
    assert isinstance(outcome, NotReplicated) and (outcome.confirmed, outcome.wanted) == (1, 2)


def test_a_failed_publish_keeps_its_own_error():
    batches, _sent = open_batches()
    got = []
    batches.submit_replicated(b"p1", got.append, 2, 1000)
    error = Exception("ERR script")
    reply(batches, lambda c: 2 if c == WAIT_2_1000 else error)
    assert got == [error]


def test_losing_the_connection_before_wait_answered_fails_each_member_once():
    batches, _sent = open_batches()
    got = []
    batches.submit_replicated(b"p1", got.append, 2, 1000)
    batches.submit_replicated(b"p2", got.append, 2, 1000)  # queued behind the batch in flight
    [_publish, _wait] = batches.unanswered()
    assert not batches.answer_replies([b"1-0"])
    batches.fail_all()
    assert got == [UNAVAILABLE, UNAVAILABLE]


def test_different_replica_counts_get_their_own_wait():
    batches, sent = open_batches()
    batches.submit(b"busy", lambda r: None)
    batches.submit_replicated(b"a", lambda r: None, 1, 1000)
    batches.submit_replicated(b"b", lambda r: None, 2, 1000)
    reply(batches, lambda c: b"ok")
    batches.next_batch()
    assert [c[:12] for c in sent[1]] == [b"a", b"*3\r\n$4\r\nWAIT", b"b", b"*3\r\n$4\r\nWAIT"]
    assert sent[1][1] != sent[1][3]
