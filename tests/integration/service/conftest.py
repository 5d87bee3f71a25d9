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
def jobs_topic(service: RunningService) -> Iterator[TopicReader]:
    reader = TopicReader(service.settings, service.settings.topic_jobs)
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture
def executor(service: RunningService) -> Executor:
    return Executor(service.settings)
