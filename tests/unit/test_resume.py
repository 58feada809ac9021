"""PROTOCOL §7 resume rules as a pure decision of (asked, first, last, replay enabled)."""

from app.engine.resume import ResumeDecision, decide_resume
from app.positions import START


def test_resume_from_start_replays_everything_retained():
    assert decide_resume(START, "5-0", "9-0", True) == ResumeDecision(START, None)


def test_resume_from_start_without_history_replays_nothing_and_is_exact():
    assert decide_resume(START, "5-0", "9-0", False) == ResumeDecision(None, None)


def test_resume_on_an_empty_channel_from_a_real_position_is_expired_to_start():
    assert decide_resume("3-0", None, None, True) == ResumeDecision(None, START)


def test_resume_at_the_tail_is_exact_and_replays_nothing():
    assert decide_resume("9-0", "5-0", "9-0", True) == ResumeDecision(None, None)


def test_resume_beyond_the_tail_is_unknown_and_restarts_at_the_tail():
    assert decide_resume("10-0", "5-0", "9-0", True) == ResumeDecision(None, "9-0")


def test_resume_inside_the_history_replays_after_the_position():
    assert decide_resume("6-1", "5-0", "9-0", True) == ResumeDecision("6-1", None)


def test_resume_before_the_oldest_entry_expired_and_replays_all_retained():
    assert decide_resume("4-0", "5-0", "9-0", True) == ResumeDecision(START, "5-0")


def test_resume_with_history_off_cannot_deliver_what_was_missed():
    assert decide_resume("6-0", "5-0", "9-0", False) == ResumeDecision(None, "9-0")


def test_a_malformed_but_accepted_position_counts_as_expired():
    assert decide_resume("abc", "5-0", "9-0", True) == ResumeDecision(START, "5-0")
