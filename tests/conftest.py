"""Session fixtures: the real Kafka and MongoDB API, from the environment or the local stack.

KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI, when both are set, point the tests at servers you run
(a real MongoDB works too); TEST_STACK=testcontainers starts the official images in Docker (for
machines with an engine; this project's own CI has none); otherwise `stack/localstack.py up`
starts Kafka and FerretDB on 127.0.0.1, and TEST_MONGODB=atomic runs the tests on the stack's
atomic MongoDB-API server instead of FerretDB (the MongoDB mode: `make pytest-atomic`). Each
test that asks for `isolated_env` gets its own topics and database, so tests never see each
other's events or documents.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo import MongoClient

from inference_common import tracing
from inference_common.kafka import client_config
from inference_common.mongo import sync_client
from inference_common.settings import CommonSettings
from tests.integration.s3 import BUILD_HINT, S3Server, given_server

ROOT = Path(__file__).resolve().parents[1]


def load_localstack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("localstack", ROOT / "stack" / "localstack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """Where Kafka and the MongoDB API answer, starting them when needed."""
    names = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")
    given = {name: os.environ[name] for name in names if name in os.environ}
    if len(given) == 2:
        yield given
    elif os.environ.get("TEST_STACK") == "testcontainers":
        yield from containers_env()
    else:
        yield local_stack_env()


def local_stack_env() -> dict[str, str]:
    backend = os.environ.get("TEST_MONGODB", "ferretdb")
    if backend not in ("ferretdb", "atomic"):
        raise pytest.UsageError(f"TEST_MONGODB={backend!r}: ferretdb (the default) or atomic")
    stack = load_localstack()
    cfg = stack.Config.from_env()
    atomic = backend == "atomic"
    stack.up(cfg, atomic_mongo=atomic)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap,
        "MONGODB_URI": cfg.atomic_mongodb_uri if atomic else cfg.mongodb_uri,
    }


@pytest.fixture(scope="session")
def on_ferretdb(stack_env: dict[str, str]) -> bool:
    """Whether the tests' MongoDB API is FerretDB, which applies updates without atomicity."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        stack_env["MONGODB_URI"], serverSelectionTimeoutMS=5000
    )
    try:
        return "ferretdbVersion" in client.admin.command("buildInfo")
    finally:
        client.close()


def containers_env() -> Iterator[dict[str, str]]:
    """The official images under testcontainers: needs a Docker engine."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.mongodb import MongoDbContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        MongoDbContainer("mongo:8.0") as mongo,
    ):
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "MONGODB_URI": mongo.get_connection_url(),
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-compatible server with the image bucket: IMAGE_STORE_S3_ENDPOINT's when set (the
    AWS variables hold its credentials; the bucket is made if missing), otherwise the local
    stack's versitygw, started here with its bucket (stack/localstack.py up --s3 starts it by
    hand). It is built on first use only when STACK_S3=1 asks for it (`make test` does); else
    the tests that need it skip, saying so."""
    server = given_server()
    if server is not None:
        server.create_bucket()
        yield server
        return
    localstack = load_localstack()
    cfg = localstack.Config.from_env()
    if localstack.versitygw_binary(cfg, build=False) is None and not cfg.s3:
        pytest.skip(BUILD_HINT)
    localstack.up_s3(cfg)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in localstack.s3_env(cfg).items():
            if name.startswith("AWS_"):  # boto3 reads these; the settings are per test
                patch.setenv(name, value)
        yield S3Server(cfg.s3_endpoint, localstack.S3_BUCKET)


@pytest.fixture
def isolated_env(
    stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Fresh topics and a fresh database for one test, exported to the environment too."""
    suffix = uuid.uuid4().hex[:10]
    env = {
        **stack_env,
        "TOPIC_JOBS": f"test.{suffix}.jobs",
        "TOPIC_RESULTS": f"test.{suffix}.results",
        "TOPIC_DEAD_LETTER": f"test.{suffix}.deadletter",
        "TOPIC_PARTITIONS": "3",
        "MONGODB_DATABASE": f"test_{suffix}",
        "ASSETS_CACHE_DIR": str(ROOT / ".cache" / "assets"),
        "ASSETS_MANIFEST": str(ROOT / "assets" / "manifest.toml"),
        # The filesystem image store (the default): one root per test, shared with the
        # services a test starts in subprocesses.
        "IMAGE_STORE_DIR": str(ROOT / ".cache" / "test-images" / suffix),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    shutil.rmtree(env["IMAGE_STORE_DIR"], ignore_errors=True)
    settings = CommonSettings()
    client = sync_client(settings)
    try:
        client.drop_database(env["MONGODB_DATABASE"])
    finally:
        client.close()
    # The broker keeps files open for every partition: without this, it piles up topics until
    # it runs out of file descriptors. Waited for: an admin client dropped at once may never
    # send the request (a long-lived dev stack had kept 2,000 test topics that way).
    topics = [settings.topic_jobs, settings.topic_results, settings.topic_dead_letter]
    admin = AdminClient(client_config(settings))
    for deleted in admin.delete_topics(topics, operation_timeout=10).values():
        with contextlib.suppress(KafkaException, TimeoutError):  # a test that made none
            deleted.result(timeout=15)


@pytest.fixture
def settings(isolated_env: dict[str, str]) -> CommonSettings:
    return CommonSettings()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """OpenTelemetry on for one test, every span it makes kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.activate(provider)
    try:
        yield exporter
    finally:
        tracing.deactivate()
        provider.shutdown()
