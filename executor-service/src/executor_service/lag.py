"""Consumer lag per partition, from librdkafka's statistics: no broker round trip of our own.

Lag here is what an autoscaler sees (KEDA's Kafka scaler computes the same): the partition's
end minus the group's committed offset, so a job counts until its results are delivered and
its offset committed, not merely until it is fetched. The end is the last stable offset, since
the executor reads committed messages only. Before the group's first commit on a partition,
the whole partition is lag, as `auto.offset.reset=earliest` will make it work.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Final

from prometheus_client import Gauge

_UNASSIGNED: Final = "-1"  # the internal partition of messages not yet given one


def partition_lags(statistics: dict[str, Any]) -> dict[tuple[str, int], int | None]:
    """(topic, partition) -> lag of each partition the statistics name; None when the
    partition is not (or no longer) assigned to this consumer."""
    lags: dict[tuple[str, int], int | None] = {}
    for topic, details in statistics.get("topics", {}).items():
        for number, partition in details.get("partitions", {}).items():
            if number == _UNASSIGNED:
                continue
            end = partition["ls_offset"] if partition["ls_offset"] >= 0 else partition["hi_offset"]
            committed = partition["committed_offset"]
            start = committed if committed >= 0 else partition["lo_offset"]  # -1001: none
            known = partition.get("desired") and end >= 0 and start >= 0
            lags[(topic, int(number))] = max(0, end - start) if known else None
    return lags


class ConsumerLag:
    """The `stats_cb` of the executor's consumer, called from its poll every
    `statistics.interval.ms` (EXECUTOR_LAG_INTERVAL_MS): sets each partition's lag gauge."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def on_statistics(self, document: str) -> None:
        for (topic, partition), lag in partition_lags(json.loads(document)).items():
            if lag is not None:
                self._gauge.labels(topic, str(partition)).set(lag)
            else:  # another executor's to report, if anyone's
                with contextlib.suppress(KeyError):
                    self._gauge.remove(topic, str(partition))
