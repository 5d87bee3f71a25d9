"""RetryPolicy: bounded attempts, each with twice the time of the one before."""

from datetime import UTC, datetime, timedelta

from inference_service.domain.job import RetryPolicy

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_each_attempt_waits_twice_as_long_as_the_one_before() -> None:
    policy = RetryPolicy(max_attempts=3, deadline_seconds=60.0)

    waits = [policy.deadline(attempt, AT) - AT for attempt in (1, 2, 3)]

    assert waits == [timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240)]


def test_retries_are_bounded_by_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, deadline_seconds=60.0)

    assert [policy.may_retry(attempt) for attempt in (1, 2, 3)] == [True, True, False]
