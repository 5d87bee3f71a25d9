"""Only the done prefix of each partition is committable."""

from __future__ import annotations

from inference_common.offsets import OffsetTracker

P0, P1 = ("jobs", 0), ("jobs", 1)


def test_out_of_order_completion_commits_only_the_done_prefix() -> None:
    tracker = OffsetTracker()
    works = [tracker.track("jobs", 0, offset) for offset in (10, 11, 12)]
    works[1].finish()
    works[2].finish()
    assert tracker.committable() == {}  # 10 is still running
    works[0].finish()
    assert tracker.committable() == {P0: 13}
    assert tracker.committable() == {}  # nothing new since


def test_work_waits_for_its_records_to_be_delivered() -> None:
    tracker = OffsetTracker()
    work = tracker.track("jobs", 1, 5)
    work.expect_record()
    work.expect_record()
    work.finish()
    work.record_delivered(True)
    assert tracker.committable() == {}
    assert tracker.open == 1
    work.record_delivered(True)
    assert tracker.committable() == {P1: 6}
    assert tracker.open == 0


def test_a_failed_delivery_is_never_committed() -> None:
    tracker = OffsetTracker()
    work = tracker.track("jobs", 0, 0)
    later = tracker.track("jobs", 0, 1)
    work.expect_record()
    work.finish()
    work.record_delivered(False)
    later.finish()
    assert tracker.committable() == {}


def test_partitions_are_independent_and_can_be_selected() -> None:
    tracker = OffsetTracker()
    tracker.track("jobs", 0, 3).finish()
    blocked = tracker.track("jobs", 1, 7)
    tracker.track("jobs", 1, 8).finish()
    assert tracker.open_in([P1]) == 1
    assert tracker.committable([P1]) == {}
    assert tracker.committable([P0]) == {P0: 4}
    blocked.finish()
    assert tracker.committable() == {P1: 9}


def test_forgotten_partitions_stop_counting_even_when_their_work_ends_later() -> None:
    woken = []
    tracker = OffsetTracker(on_done=lambda: woken.append(1))
    running = tracker.track("jobs", 0, 0)
    tracker.track("jobs", 1, 0)
    assert tracker.open == 2
    tracker.forget([P0])
    assert tracker.open == 1
    running.finish()  # a worker finishing after the revoke
    assert tracker.open == 1
    assert tracker.committable() == {}
    assert woken == [1]
