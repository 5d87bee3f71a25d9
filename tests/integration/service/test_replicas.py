"""Two job-service replicas on one database and one set of topics race on the same jobs.

The deployment this proves: several replicas behind a load balancer on an atomic MongoDB,
where nothing but the database's compare-and-set filters keeps two replicas' writes to one job
apart. Each replica runs its API, relay (one holds the lease), result folder (one consumer
group: each folds the partitions it owns) and sweeper. The executor is played by the test: it
answers every execution request with `started` and `completed`, then delivers that `completed`
again (a redelivery) and a second `completed` with a new id (a job run twice).

Each job is executed through both replicas at once and cancelled through replica B, at one of
three moments: with the executes, as the executor publishes `started`, or as it publishes
`completed`. Whatever wins, every job's history moves forward only, no job runs twice in
effect, and no state change is without its event.

FerretDB 1.24 applies no update atomically (tests/integration/atomicity.py): the service runs
one replica there, so this runs on an atomic server only (`make pytest-atomic`).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from inference_common.events import EventType
from inference_common.kafka import ensure_topics
from inference_common.mongo import sync_client
from inference_service.settings import ServiceSettings
from tests.faults.audit import TopicEvent, read_topic
from tests.integration.service.harness import (
    BASE,
    Executor,
    RunningService,
    TopicReader,
    event_data,
    headers_of,
    image_bytes,
    new_job,
    replica_settings,
    start_service,
    wait_for,
)
from tests.integration.service.test_metrics import Scrape

pytestmark = pytest.mark.integration

JOBS = 99  # a third for each moment of the cancel
# When replica B's cancel is sent: with the two executes, or as the executor publishes.
MOMENTS = ("with-execute", "with-started", "with-completed")
# Forward only: a status may be followed by a higher rank, never by a lower or equal one.
RANK = {"NEW": 0, "QUEUED": 1, "RUNNING": 2, "DONE": 3, "FAILED": 3, "CANCELLED": 3}


@dataclass
class Race:
    """What the clients were answered, per job."""

    moment: dict[str, str]
    executes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    cancels: dict[str, int] = field(default_factory=dict)


@pytest.mark.usefixtures("atomic_mongodb")
def test_two_replicas_race_execute_cancel_and_folding(isolated_env: dict[str, str]) -> None:
    # A deadline far away and no retention sweep: no sweeper retry and no `purged` event, so
    # each job's expected events are exact (test_retention races replicas' purges).
    a, b = replica_settings(execution_deadline_seconds=600, run_purger=False)
    ensure_topics(a)
    with ExitStack() as stack:
        replica_a = stack.enter_context(_replica(a))
        replica_b = stack.enter_context(_replica(b))
        image = image_bytes("airliner.jpg")
        job_ids = [
            new_job((replica_a, replica_b)[i % 2].client, image=image)["id"] for i in range(JOBS)
        ]
        race = Race({job_id: MOMENTS[i % 3] for i, job_id in enumerate(job_ids)})
        watcher = stack.enter_context(_status_watcher(a))
        executor = stack.enter_context(_executor(a, replica_b, race))
        asyncio.run(_execute_and_cancel(replica_a.url, replica_b.url, race))
        wait_for(lambda: _settled(watcher, job_ids), 120, "every job settled, every outbox empty")
        executor.stop()
        watcher.stop()
        folded = [_folded_completions(replica) for replica in (replica_a, replica_b)]
        documents = _documents(watcher)
    jobs_log, results_log = (read_topic(a, topic) for topic in (a.topic_jobs, a.topic_results))
    job_events, result_events = jobs_log.by_job(), results_log.by_job()

    problems: list[str] = []
    for job_id in job_ids:
        job = documents[job_id]
        problems += [f"{job_id} ({race.moment[job_id]}): {p}" for p in _check(job, race, watcher)]
        problems += [
            f"{job_id}: {p}"
            for p in _check_events(job, job_events.get(job_id, []), result_events.get(job_id, []))
        ]
    assert not problems, "\n".join(problems[:20])

    outcomes = Counter((race.moment[j], documents[j]["status"]) for j in job_ids)
    print(f"outcomes by moment of the cancel: {dict(sorted(outcomes.items()))}")
    print(f"completions folded by replica A, B: {folded}")
    done = sum(1 for j in job_ids if documents[j]["status"] == "DONE")
    # Both folders took part, and between them applied exactly one `completed` per DONE job.
    assert all(count > 0 for count in folded), folded
    assert sum(folded) == done
    # The race had both endings: some cancels came too late, some stopped a job in flight.
    assert 0 < done < JOBS, outcomes


@contextmanager
def _replica(settings: ServiceSettings) -> Iterator[RunningService]:
    replica = start_service(settings)
    try:
        yield replica
    finally:
        replica.stop()


async def _execute_and_cancel(url_a: str, url_b: str, race: Race) -> None:
    """Both replicas execute every job at once; B cancels the first third at the same moment."""
    # A connection per request: a kept-alive one may be closed by the server (its keep-alive
    # timeout) just as a request goes out on it, which would fail a request never answered.
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(base_url=url_a + BASE, timeout=60, limits=limits) as client_a,
        httpx.AsyncClient(base_url=url_b + BASE, timeout=60, limits=limits) as client_b,
    ):

        async def one(job_id: str) -> None:
            requests = [client.post(f"/jobs/{job_id}/execution") for client in (client_a, client_b)]
            cancel = race.moment[job_id] == "with-execute"
            if cancel:
                requests.append(client_b.post(f"/jobs/{job_id}/cancellation", json={}))
            answers = await asyncio.gather(*requests)
            race.executes[job_id] = [answer.status_code for answer in answers[:2]]
            if cancel:
                race.cancels[job_id] = answers[2].status_code

        await asyncio.gather(*(one(job_id) for job_id in race.moment))


class _Loop:
    def __init__(self, target: Any) -> None:
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                self._target()
        except BaseException as exc:
            self.failure = exc

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()

    def stop(self) -> None:
        """Ends the loop, raising what failed in it."""
        self.stopping.set()
        self.join()
        if self.failure is not None:
            raise self.failure


class _StatusWatcher(_Loop):
    """Polls every job's status in the database and keeps each job's sequence of changes."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.client = sync_client(settings)
        self.jobs = self.client[settings.mongodb_database]["jobs"]
        self.seen: dict[str, list[str]] = defaultdict(list)
        super().__init__(self._poll)

    def _poll(self) -> None:
        for job in self.jobs.find({}, {"status": 1}):
            statuses = self.seen[job["_id"]]
            if not statuses or statuses[-1] != job["status"]:
                statuses.append(job["status"])


@contextmanager
def _status_watcher(settings: ServiceSettings) -> Iterator[_StatusWatcher]:
    watcher = _StatusWatcher(settings)
    try:
        yield watcher
    finally:
        watcher.stopping.set()
        watcher.join()
        watcher.client.close()


class _FakeExecutor(_Loop):
    """Answers each execution request; cancels through replica B when the job's moment comes."""

    def __init__(self, settings: ServiceSettings, replica_b: RunningService, race: Race) -> None:
        self.race = race
        self.reader = TopicReader(settings, settings.topic_jobs)
        self.publisher = Executor(settings)
        self.cancel_url = f"{replica_b.url}{BASE}/jobs/{{}}/cancellation"
        self.cancellers = ThreadPoolExecutor(8)
        self.answered: set[str] = set()
        self.read = 0
        super().__init__(self._step)

    def _step(self) -> None:
        self.reader.read(0, timeout=0.2)
        for message in self.reader.messages[self.read :]:
            request = event_data(message)
            if headers_of(message).get("ce_type") != EventType.EXECUTION_REQUESTED.value:
                continue
            if request["execution_id"] not in self.answered:
                self.answered.add(request["execution_id"])
                self._answer(request)
        self.read = len(self.reader.messages)

    def _answer(self, request: dict[str, Any]) -> None:
        moment = self.race.moment[request["job_id"]]
        self.publisher.started(request)
        if moment == "with-started":
            self.cancellers.submit(self._cancel, request["job_id"])
        completed = self.publisher.completed(request)
        if moment == "with-completed":
            self.cancellers.submit(self._cancel, request["job_id"])
        self.publisher.completed(request, event_id=completed)  # redelivered
        self.publisher.completed(request)  # and run a second time

    def _cancel(self, job_id: str) -> None:
        answer = httpx.post(self.cancel_url.format(job_id), json={}, timeout=60)
        self.race.cancels[job_id] = answer.status_code

    def close(self) -> None:
        self.cancellers.shutdown(wait=True)
        self.reader.close()


@contextmanager
def _executor(
    settings: ServiceSettings, replica_b: RunningService, race: Race
) -> Iterator[_FakeExecutor]:
    executor = _FakeExecutor(settings, replica_b, race)
    try:
        yield executor
    finally:
        executor.stopping.set()
        executor.join()
        executor.close()


def _settled(watcher: _StatusWatcher, job_ids: list[str]) -> bool:
    documents = _documents(watcher)
    return all(
        documents[job_id]["status"] in ("DONE", "CANCELLED")
        and not documents[job_id]["outbox_pending"]
        for job_id in job_ids
    )


def _documents(watcher: _StatusWatcher) -> dict[str, dict[str, Any]]:
    return {job["_id"]: job for job in watcher.jobs.find()}


def _folded_completions(replica: RunningService) -> int:
    """The replica's own count of the `completed` events it applied (its /metrics)."""
    scrape = Scrape(replica.url)
    return int(scrape("inference_results_folded_total", type="job.completed.v1", outcome="applied"))


def _check(job: dict[str, Any], race: Race, watcher: _StatusWatcher) -> list[str]:
    """The clients' answers, the stored job and the statuses seen on the way agree."""
    problems = []
    job_id, status = job["_id"], job["status"]
    executes, cancel = race.executes[job_id], race.cancels.get(job_id)
    if sorted(executes) not in ([202, 409], [409, 409]):
        problems.append(f"the two executes were answered {executes}")
    accepted = executes.count(202)
    if len(job["execution_ids"]) != accepted:
        problems.append(f"{accepted} execute(s) accepted, {len(job['execution_ids'])} stored")
    expected_cancel = {"CANCELLED": 200, "DONE": 409}.get(status)
    if cancel != expected_cancel:
        problems.append(f"{status}, and the cancel was answered {cancel}")
    if status == "CANCELLED" and job.get("result"):
        problems.append("CANCELLED with a result")
    if job["outbox"]:
        problems.append(f"{len(job['outbox'])} event(s) left in the outbox")
    seen = watcher.seen[job_id]
    if any(RANK[later] <= RANK[earlier] for earlier, later in itertools.pairwise(seen)):
        problems.append(f"went backwards: {' -> '.join(seen)}")
    return problems


def _check_events(
    job: dict[str, Any], job_events: list[TopicEvent], result_events: list[TopicEvent]
) -> list[str]:
    """Each state change's event is on the topics, once each, in the order of the changes; at
    most one `completed` was applied, and none to a cancelled job."""
    problems = []
    distinct = list({event.id: event for event in job_events}.values())
    kinds = [event.type for event in distinct]
    expected = [EventType.CREATED]
    expected += [EventType.EXECUTION_REQUESTED] * len(job["execution_ids"])
    expected += [EventType.CANCELLED] * (job["status"] == "CANCELLED")
    if kinds != expected:
        problems.append(f"jobs topic has {[k.short for k in kinds]}, expected the changes' events")
    requests = [event for event in distinct if event.type is EventType.EXECUTION_REQUESTED]
    requested = [event.data["execution_id"] for event in requests]
    if requested != job["execution_ids"]:
        problems.append(f"requested {requested}, stored {job['execution_ids']}")
    on_topic = {event.id: event for event in result_events}
    applied = [on_topic.get(event_id) for event_id in job["applied_events"]]
    if None in applied or len(set(job["applied_events"])) != len(applied):
        problems.append(f"applied events {job['applied_events']}: unknown or applied twice")
    completed = [e for e in applied if e is not None and e.type is EventType.COMPLETED]
    if job["status"] == "DONE":
        if len(completed) != 1:
            problems.append(f"DONE with {len(completed)} `completed` applied")
        elif job["result"]["execution_id"] != completed[0].data["execution_id"]:
            problems.append("the stored result is not the applied `completed`")
    elif completed:
        problems.append(f"{job['status']}, yet a `completed` was applied")
    return problems
