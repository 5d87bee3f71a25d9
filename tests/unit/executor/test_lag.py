"""Lag from librdkafka's statistics: end of the partition minus the group's committed offset."""

from __future__ import annotations

import json
from typing import Any

from executor_service.lag import ConsumerLag, partition_lags
from executor_service.metrics import Metrics

NONE = -1001  # librdkafka's "no offset"


def partition(
    *, desired: bool = True, lo: int = 0, hi: int = 10, ls: int = 10, committed: int = NONE
) -> dict[str, Any]:
    return {
        "desired": desired,
        "lo_offset": lo,
        "hi_offset": hi,
        "ls_offset": ls,
        "committed_offset": committed,
    }


def statistics(**partitions: dict[str, Any]) -> dict[str, Any]:
    unassigned = partition(desired=False, lo=NONE, hi=NONE, ls=NONE)
    return {"topics": {"jobs": {"partitions": {"-1": unassigned, **partitions}}}}


def test_lag_counts_from_the_committed_offset_to_the_last_stable_one() -> None:
    lags = partition_lags(
        statistics(
            **{
                "0": partition(committed=4),  # 6 to go
                "1": partition(lo=3),  # nothing committed yet: all of it, from the start
                "2": partition(hi=12, ls=9, committed=9),  # an open transaction is not lag
                "3": partition(desired=False, committed=2),  # revoked: not ours to report
                "4": partition(hi=NONE, ls=NONE),  # end not known yet
            }
        )
    )
    assert lags == {
        ("jobs", 0): 6,
        ("jobs", 1): 7,
        ("jobs", 2): 0,
        ("jobs", 3): None,
        ("jobs", 4): None,
    }


def test_the_gauge_follows_the_statistics_and_drops_revoked_partitions() -> None:
    metrics = Metrics()
    lag = ConsumerLag(metrics.consumer_lag)

    def gauge(number: str) -> float | None:
        labels = {"topic": "jobs", "partition": number}
        return metrics.registry.get_sample_value("inference_executor_consumer_lag", labels)

    lag.on_statistics(json.dumps(statistics(**{"0": partition(committed=4), "1": partition()})))
    assert (gauge("0"), gauge("1")) == (6, 10)
    lag.on_statistics(
        json.dumps(statistics(**{"0": partition(committed=10), "1": partition(desired=False)}))
    )
    assert (gauge("0"), gauge("1")) == (0, None)
