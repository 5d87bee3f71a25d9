"""How many database operations one job costs the job service on the happy path: counted
with a pymongo command listener, on the real database.

A behaviour, not a timing: the count must not creep back up (docs/benchmarks.md). The
executor is played by the test (its own reads are the executor's business); it answers with
`started` and `completed` together, as a fast model does.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from inference_common.kafka import ensure_topics
from inference_common.mongo import sync_client
from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    image_bytes,
    post_job,
    requests_for,
    service_settings,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.integration

JOBS = 10
# Reads and writes of documents; not the driver's handshakes, pings and index checks.
COUNTED = frozenset({"find", "insert", "update", "delete", "findAndModify", "getMore", "aggregate"})
# Renewed every 10 s whatever the traffic: a cost per second, not per job.
PER_SECOND = frozenset({"leases"})


class Operations(monitoring.CommandListener):
    """Every counted command on one database, by collection."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.counts: collections.Counter[str] = collections.Counter()
        self.counting = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.counting or event.database_name != self.database:
            return
        if event.command_name in COUNTED:
            target = event.command.get(event.command_name)
            if event.command_name == "getMore":
                target = event.command.get("collection")
            self.counts[str(target)] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@pytest.fixture
def counted(
    isolated_env: dict[str, str],
) -> Iterator[tuple[RunningService, Operations, MongoClient[dict[str, Any]]]]:
    settings = service_settings(relay_poll_interval_seconds=5.0, folder_linger_ms=1000)
    ensure_topics(settings)
    operations = Operations(settings.mongodb_database)
    # The test's own client, made before the listener is registered: not counted.
    client = sync_client(settings)
    # Registered before the service makes its clients: those are counted.
    monitoring.register(operations)
    service = start_service(settings)
    try:
        yield service, operations, client
    finally:
        operations.counting = False
        service.stop()
        client.close()


def test_a_job_costs_at_most_four_database_operations(
    counted: tuple[RunningService, Operations, MongoClient[dict[str, Any]]],
) -> None:
    service, operations, client = counted
    jobs = client[service.settings.mongodb_database]["jobs"]
    executor = Executor(service.settings)
    reader = TopicReader(service.settings, service.settings.topic_jobs)
    image = image_bytes()

    def one_job() -> None:
        response = post_job(service.client, image=image, execute=True)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        [request] = requests_for(reader, job_id, 1)
        executor.started(request)
        executor.completed(request)
        wait_for(lambda: is_done(jobs, job_id), 30, "the job DONE")
        result = service.client.get(f"/jobs/{job_id}/result")
        assert result.status_code == 200, result.text

    try:
        one_job()  # the start-up's one-time reads and lease are not a job's
        wait_for(lambda: not jobs.count_documents({"outbox_pending": True}), 10, "published")
        operations.counting = True
        for _ in range(JOBS):
            one_job()
        wait_for(lambda: not jobs.count_documents({"outbox_pending": True}), 10, "published")
        operations.counting = False
    finally:
        reader.close()
    per_job = {name: count / JOBS for name, count in operations.counts.items()}
    print(f"database operations per job: {per_job}")
    total = sum(count for name, count in per_job.items() if name not in PER_SECOND)
    if "ferretdbVersion" not in client.admin.command("buildInfo"):
        pytest.skip(f"{total:.1f} per job on MongoDB (the bound is FerretDB's path)")
    # The job inserted with its events, its outbox cleared, its result folded; the image is one
    # more only where the database is also the image store (IMAGE_STORE=mongodb).
    assert per_job.get("jobs", 0) <= 3, per_job
    assert per_job.get("images", 0) <= 1, per_job
    assert total <= 4, per_job


def is_done(jobs: Any, job_id: str) -> bool:
    return bool((jobs.find_one({"_id": job_id}) or {}).get("status") == "DONE")
