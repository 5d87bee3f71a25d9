"""Fixtures: a running job service on fresh topics and a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    running,
)


@pytest.fixture
def service(isolated_env: dict[str, str]) -> Iterator[RunningService]:
    with running() as service:
        yield service


@pytest.fixture
def atomic_mongodb(on_ferretdb: bool) -> None:
    """For several replicas: FerretDB 1.24 applies no update atomically, so the service runs
    one replica there (tests/integration/test_atomicity.py)."""
    if on_ferretdb:
        pytest.skip("FerretDB 1.24 is not atomic: one replica only there (TEST_MONGODB=atomic)")


@pytest.fixture
def jobs_topic(service: RunningService) -> Iterator[TopicReader]:
    reader = TopicReader(service.settings, service.settings.topic_jobs)
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture
def executor(service: RunningService) -> Executor:
    return Executor(service.settings)
