"""The job service on a loopback port, plus the executor's side played by the tests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from inference_common.events import EventType, new_event, to_record
from inference_common.image_refs import IMAGE_COLLECTION
from inference_common.kafka import consumer_config, ensure_topics, producer_config
from inference_common.mongo import sync_client
from inference_service.api.app import create_app
from inference_service.runtime import Runtime
from inference_service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / ".cache" / "assets" / "images"
BASE = "/api/v1/inference"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    settings: ServiceSettings
    runtime: Runtime
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url + BASE, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.runtime.end_streams()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the service did not stop"


def service_settings(**overrides: Any) -> ServiceSettings:
    defaults: dict[str, Any] = {
        "openapi_dir": ROOT / "openapi",
        "folder_group_id": f"test-folder-{uuid.uuid4().hex[:8]}",
        "webhook_group_id": f"test-webhooks-{uuid.uuid4().hex[:8]}",
        # Only test_webhooks.py runs the dispatcher, to its receivers on loopback over http:
        # no other test (the fuzzer's random URLs) can make it reach another address.
        "run_webhooks": False,
        "webhook_allow_http": True,
        "webhook_allow_loopback": True,
        "relay_poll_interval_seconds": 0.5,
        "sweep_interval_seconds": 0.5,
        "service_port": free_port(),
        "validate_responses": True,
        "sse_keepalive_seconds": 1.0,
    }
    return ServiceSettings(**{**defaults, **overrides})


def replica_settings(**overrides: Any) -> tuple[ServiceSettings, ServiceSettings]:
    """Two replicas of one service: the test's database and topics, one result-folder group
    (each replica folds the partitions it owns), no live-event consumer."""
    group = f"test-folder-{uuid.uuid4().hex[:8]}"
    a, b = (service_settings(folder_group_id=group, run_live=False, **overrides) for _ in "ab")
    return a, b


def start_service(settings: ServiceSettings, *, wait_live: bool = True) -> RunningService:
    runtime = Runtime(settings)
    app = create_app(settings, runtime)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.service_port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name="service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the service failed to start"
        assert time.monotonic() < deadline, "the service did not start in 30 s"
        time.sleep(0.05)
    running = RunningService(
        settings, runtime, server, thread, f"http://127.0.0.1:{settings.service_port}"
    )
    if wait_live and settings.run_live:
        wait_for(
            lambda: runtime.live is not None and runtime.live.ready.is_set(), 30, "live events"
        )
    return running


def wait_for(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def running(*, wait_live: bool = True, **overrides: Any) -> Iterator[RunningService]:
    """A service with these settings on the test's topics (made first) and database."""
    settings = service_settings(**overrides)
    ensure_topics(settings)
    service = start_service(settings, wait_live=wait_live)
    try:
        yield service
    finally:
        service.stop()


def image_bytes(name: str = "cat_720p.jpg") -> bytes:
    return (IMAGES / name).read_bytes()


class TopicReader:
    """Reads a topic from the beginning (its own group), keeping everything it saw."""

    def __init__(self, settings: ServiceSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}"))
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.messages: list[Message] = []

    def read(self, count: int, timeout: float = 30.0, settle: float = 0.0) -> list[Message]:
        """Wait for at least `count` messages in total, then `settle` more seconds for extras."""
        deadline = time.monotonic() + timeout
        self._poll(0.1)
        while len(self.messages) < count and time.monotonic() < deadline:
            self._poll(0.2)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            self._poll(0.2)
        return self.messages

    def _poll(self, timeout: float) -> None:
        for message in self.consumer.consume(100, timeout):
            if message.error() is None:
                self.messages.append(message)

    def close(self) -> None:
        self.consumer.close()


class Executor:
    """Plays the executor: publishes started/completed/failed to the results topic."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.producer = Producer(producer_config(settings))

    def publish(
        self, event_type: EventType, job_id: str, data: dict[str, Any], event_id: str | None = None
    ) -> str:
        event = new_event(
            event_type, "/executor-service", job_id, {"job_id": job_id, **data}, event_id=event_id
        )
        record = to_record(event)
        self.producer.produce(
            self.settings.topic_results, record.value, record.key, headers=record.headers
        )
        assert self.producer.flush(30) == 0
        return str(event.get_id())

    def raw(self, value: bytes, key: bytes | None = None, headers: list[Any] | None = None) -> None:
        self.producer.produce(self.settings.topic_results, value, key, headers=headers)
        assert self.producer.flush(30) == 0

    @staticmethod
    def execution(request: dict[str, Any]) -> dict[str, Any]:
        return {"execution_id": request["execution_id"], "attempt": request["attempt"]}

    def started(self, request: dict[str, Any], **kw: Any) -> str:
        return self.publish(
            EventType.STARTED,
            request["job_id"],
            {**self.execution(request), "executor": "test:1", "started_at": now_iso()},
            **kw,
        )

    def completed(self, request: dict[str, Any], **kw: Any) -> str:
        result = {"task": "classification", "classes": [{"index": 1, "label": "cat", "score": 0.9}]}
        return self.publish(
            EventType.COMPLETED,
            request["job_id"],
            {
                **self.execution(request),
                "executor": "test:1",
                "model": request["model"],
                "result": result,
                "timings": {"decode": 1.5, "invoke": 4.0},
                "completed_at": now_iso(),
            },
            **kw,
        )

    def failed(self, request: dict[str, Any], code: str, retryable: bool, **kw: Any) -> str:
        return self.publish(
            EventType.FAILED,
            request["job_id"],
            {
                **self.execution(request),
                "executor": "test:1",
                "failed_by": "test:1",
                "error": {"code": code, "message": "it broke", "retryable": retryable},
                "failed_at": now_iso(),
            },
            **kw,
        )


def now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def headers_of(message: Message) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in message.headers() or []}


def event_data(message: Message) -> dict[str, Any]:
    return dict(json.loads(message.value() or b"{}"))


def jobs_in_db(settings: ServiceSettings) -> Any:
    client = sync_client(settings)
    return client, client[settings.mongodb_database]["jobs"]


def stored_images(settings: ServiceSettings) -> int:
    """How many images the configured image store holds (the test's own directory or database)."""
    if settings.image_store == "filesystem":
        root = settings.image_store_dir
        return sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0
    assert settings.image_store == "mongodb", settings.image_store
    client = sync_client(settings)
    try:
        return client[settings.mongodb_database][IMAGE_COLLECTION].count_documents({})
    finally:
        client.close()


# --- HTTP helpers ---


def post_job(
    client: httpx.Client,
    *,
    image: bytes | None = None,
    model: str = "mobilenet-v2-imagenet-quant",
    options: str | None = None,
    execute: bool = False,
    name: str | None = None,
    headers: dict[str, str] | None = None,
    media_type: str = "image/jpeg",
    keep_image: bool = False,
) -> httpx.Response:
    if image is None:
        body: dict[str, Any] = {"model": model, "execute": execute}
        if keep_image:
            body["keep_image"] = True
        if options is not None:
            body["options"] = json.loads(options)
        if name is not None:
            body["name"] = name
        return client.post("/jobs", json=body, headers=headers)
    form = {"model": model, "execute": "true" if execute else "false"}
    if keep_image:
        form["keep_image"] = "true"
    if options is not None:
        form["options"] = options
    if name is not None:
        form["name"] = name
    return client.post(
        "/jobs", files={"image": ("upload", image, media_type)}, data=form, headers=headers
    )


def new_job(client: httpx.Client, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("image", image_bytes())
    response = post_job(client, **kwargs)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_status(
    client: httpx.Client, job_id: str, status: str, timeout: float = 20.0
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return seen.get("status") == status

    try:
        wait_for(reached, timeout, f"job {job_id} to be {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {seen.get('status')}") from None
    return seen


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = dict(response.json())
    assert body["status"] == status
    assert body["title"] and "detail" in body and body["type"]
    assert body.get("instance"), body
    if slug is not None:
        assert body["type"] == f"urn:cvinference:problem:{slug}", body
    return body


def requests_for(reader: TopicReader, job_id: str, count: int) -> list[dict[str, Any]]:
    """The execution_requested data of a job, in order, once `count` have arrived."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        reader.read(0, timeout=0.3)
        found[:] = [
            event_data(m)
            for m in reader.messages
            if (m.key() or b"").decode() == job_id
            and headers_of(m).get("ce_type") == EventType.EXECUTION_REQUESTED.value
        ]
        return len(found) >= count

    wait_for(enough, 30, f"{count} execution request(s) for {job_id}")
    return found


class SseReader:
    """Reads a server-sent event stream on a thread; `ready` once the subscription is live."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=30)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    return
                current: dict[str, Any] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.ready.set()
                    elif line == "":
                        if current:
                            self.events.append(current)
                            current = {}
                    else:
                        name, _, value = line.partition(": ")
                        current[name] = json.loads(value) if name == "data" else value
        except httpx.HTTPError:
            pass
        finally:
            self.ready.set()
            self.ended.set()

    def wait_ready(self) -> None:
        assert self.ready.wait(20), "the stream did not start"
        assert self.status == 200, self.status

    def wait_events(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.events) >= count or self.ended.is_set(), timeout, "SSE events")
        return self.events
