"""After the faults: what the database, the API and both topics (read from the beginning) say.

Lost: a job the client was given an id for that is not stored; a job not in a terminal state;
a job whose `created`, one of its `execution_requested` or its deciding result is missing from
the topics; events still waiting in an outbox. Duplicated in effect: an event id applied twice
to one job, or more than one deciding result applied (two outcomes). A redelivered event (the
same CloudEvent id read twice) and a job run twice (two `completed` with different ids, one
applied) are counted, and harmless.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inference_common.events import EventType, InvalidEvent, from_record
from inference_common.settings import CommonSettings
from inference_service.adapters.kafka import header_pairs
from tests.integration.executor.support import topic_reader

TERMINAL = frozenset({"DONE", "FAILED", "CANCELLED"})
SERVICE_SOURCE = "/inference-service"


@dataclass(frozen=True)
class TopicEvent:
    id: str
    type: EventType
    job_id: str
    source: str
    data: dict[str, Any]


@dataclass
class TopicLog:
    """Every message of one topic, in partition order; the ones that are not our events apart."""

    topic: str
    events: list[TopicEvent] = field(default_factory=list)
    undecodable: int = 0

    @property
    def redeliveries(self) -> int:
        """Copies beyond the first of an event id (an outbox or executor republishing)."""
        return len(self.events) - len({event.id for event in self.events})

    def by_job(self) -> dict[str, list[TopicEvent]]:
        grouped: dict[str, list[TopicEvent]] = defaultdict(list)
        for event in self.events:
            grouped[event.job_id].append(event)
        return grouped


def read_topic(settings: CommonSettings, topic: str, timeout: float = 120.0) -> TopicLog:
    log = TopicLog(topic)
    with topic_reader(settings, topic) as reader:
        messages = reader.read_to_end(timeout)
    for message in messages:
        try:
            envelope = from_record(message.value(), header_pairs(message), message.key())
        except InvalidEvent:
            log.undecodable += 1
            continue
        log.events.append(
            TopicEvent(envelope.id, envelope.type, envelope.subject, envelope.source, envelope.data)
        )
    return log


@dataclass
class AuditReport:
    jobs_in_database: int
    statuses: Counter[str]
    lost: dict[str, list[str]]
    duplicated_in_effect: dict[str, list[str]]
    redeliveries: dict[str, int]
    jobs_run_more_than_once: int
    jobs_retried: int
    events_of_unknown_jobs: int
    undecodable: int

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated_in_effect and not self.undecodable

    def problems(self, limit: int = 10) -> list[str]:
        lines = [f"lost {job}: {'; '.join(why)}" for job, why in self.lost.items()]
        lines += [
            f"duplicated in effect {job}: {'; '.join(why)}"
            for job, why in self.duplicated_in_effect.items()
        ]
        if self.undecodable:
            lines.append(f"{self.undecodable} message(s) on the topics are not our events")
        return lines[:limit]


def is_deciding(event: TopicEvent, max_attempts: int) -> bool:
    """A result that ends a job when applied: `completed`, or a `failed` that is not retried."""
    if event.type is EventType.COMPLETED:
        return True
    if event.type is not EventType.FAILED:
        return False
    error = event.data["error"]
    return not (error["retryable"] and event.data["attempt"] < max_attempts)


def audit(
    jobs: Iterable[Mapping[str, Any]],
    client_job_ids: Iterable[str],
    job_events: TopicLog,
    result_events: TopicLog,
    api_statuses: Mapping[str, str],
    *,
    max_attempts: int,
) -> AuditReport:
    """Every check, job by job; nothing here waits or reads: the caller collected it all."""
    stored = {str(job["_id"]): job for job in jobs}
    lost: dict[str, list[str]] = defaultdict(list)
    doubled: dict[str, list[str]] = defaultdict(list)
    for job_id in set(client_job_ids) - set(stored):
        lost[job_id].append("the client was given this id, the database has no such job")
    requests, results = job_events.by_job(), result_events.by_job()
    for job_id, job in stored.items():
        _check_job_topic(job, requests.get(job_id, []), lost[job_id])
        _check_outcome(job, results.get(job_id, []), max_attempts, lost[job_id], doubled[job_id])
        seen = api_statuses.get(job_id)
        if seen != job["status"]:
            lost[job_id].append(f"the API says {seen}, the database {job['status']}")
    unknown = sum(
        len(events)
        for log in (requests, results)
        for job_id, events in log.items()
        if job_id not in stored
    )
    return AuditReport(
        jobs_in_database=len(stored),
        statuses=Counter(str(job["status"]) for job in stored.values()),
        lost={job: why for job, why in lost.items() if why},
        duplicated_in_effect={job: why for job, why in doubled.items() if why},
        redeliveries={log.topic: log.redeliveries for log in (job_events, result_events)},
        jobs_run_more_than_once=sum(
            1
            for events in results.values()
            if len({e.id for e in events if e.type is EventType.COMPLETED}) > 1
        ),
        jobs_retried=sum(1 for job in stored.values() if job["attempt"] > 1),
        events_of_unknown_jobs=unknown,
        undecodable=job_events.undecodable + result_events.undecodable,
    )


def _check_job_topic(job: Mapping[str, Any], events: list[TopicEvent], lost: list[str]) -> None:
    if job["status"] not in TERMINAL:
        lost.append(f"stuck in {job['status']}")
    if job.get("outbox_pending") or job.get("outbox"):
        lost.append(f"{len(job.get('outbox') or [])} event(s) never left its outbox")
    if not any(event.type is EventType.CREATED for event in events):
        lost.append("no `created` on the jobs topic")
    requested = {
        event.data["execution_id"]
        for event in events
        if event.type is EventType.EXECUTION_REQUESTED
    }
    if not requested:
        lost.append("no `execution_requested` on the jobs topic")
    for execution_id in job["execution_ids"]:
        if execution_id not in requested:
            lost.append(f"execution {execution_id} was never requested on the jobs topic")


def _check_outcome(
    job: Mapping[str, Any],
    events: list[TopicEvent],
    max_attempts: int,
    lost: list[str],
    doubled: list[str],
) -> None:
    applied: list[str] = list(job.get("applied_events") or [])
    for event_id, copies in Counter(applied).items():
        if copies > 1:
            doubled.append(f"event {event_id} applied {copies} times")
    on_topic = {event.id: event for event in events}
    missing = [event_id for event_id in set(applied) if event_id not in on_topic]
    if missing:
        lost.append(f"{len(missing)} applied event(s) not on the results topic")
    deciding = [
        on_topic[event_id]
        for event_id in dict.fromkeys(applied)
        if event_id in on_topic and is_deciding(on_topic[event_id], max_attempts)
    ]
    if len(deciding) > 1:
        kinds = ", ".join(f"{e.type.short} {e.id}" for e in deciding)
        doubled.append(f"{len(deciding)} outcomes applied: {kinds}")
    status = job["status"]
    if status == "DONE":
        _check_done(job, deciding, lost, doubled)
    elif status == "FAILED":
        _check_failed(job, events, deciding, lost, doubled)


def _check_done(
    job: Mapping[str, Any], deciding: list[TopicEvent], lost: list[str], doubled: list[str]
) -> None:
    result = job.get("result") or {}
    completed = [event for event in deciding if event.type is EventType.COMPLETED]
    if not completed:
        lost.append("DONE, but no applied `completed` on the results topic")
        return
    if any(event.type is EventType.FAILED for event in deciding):
        doubled.append("DONE, and a `failed` was applied too")
    event = completed[0]
    if event.data["execution_id"] != result.get("execution_id"):
        doubled.append("the stored result is not the `completed` that was applied")
    if result.get("execution_id") not in job["execution_ids"]:
        doubled.append("the stored result answers an execution that was never requested")
    if result.get("model") != job["model"]:
        doubled.append(f"result of model {result.get('model')}, job of {job['model']}")


def _check_failed(
    job: Mapping[str, Any],
    events: list[TopicEvent],
    deciding: list[TopicEvent],
    lost: list[str],
    doubled: list[str],
) -> None:
    error = job.get("error") or {}
    if error.get("code") != "deadline_exceeded":
        if not any(event.type is EventType.FAILED for event in deciding):
            lost.append("FAILED, but no applied `failed` on the results topic")
        return
    # The job service gave up itself: its own `failed`, and no executor outcome applied.
    if deciding:
        doubled.append("failed by the deadline, yet an executor's outcome was applied")
    if not any(
        event.type is EventType.FAILED
        and event.source == SERVICE_SOURCE
        and event.data["execution_id"] == job["execution_id"]
        for event in events
    ):
        lost.append("failed by the deadline, but its `failed` is not on the results topic")
