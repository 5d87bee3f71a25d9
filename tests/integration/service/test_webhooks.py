"""Webhooks on the real Kafka and MongoDB API, to a receiver on loopback: signed deliveries,
retries after a 500 and a timeout, the dead letter, a dispatcher restart mid-delivery, and
`https` with a private CA (WEBHOOK_CA_FILE)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from standardwebhooks import Webhook

from inference_common.events import EventType
from inference_common.kafka import ensure_topics
from inference_common.mongo import sync_client
from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    assert_problem,
    headers_of,
    image_bytes,
    requests_for,
    service_settings,
    start_service,
    wait_for,
    wait_status,
)

# Each test on its own topics and database (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("isolated_env")]

FAST = {
    "run_webhooks": True,
    "webhook_max_attempts": 3,
    "webhook_backoff_seconds": 0.2,
    "webhook_backoff_max_seconds": 0.5,
    "webhook_read_timeout_seconds": 1.0,
}


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """A webhook receiver on loopback. `script` says how to answer each request in turn (an
    HTTP status, or "hang" to answer after the sender's timeout); then 200. With `tls`, it
    answers `https` at `https://localhost:PORT/hook` (the service resolves the name)."""

    def __init__(self, *script: int | str, tls: ssl.SSLContext | None = None) -> None:
        self.script = list(script)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    step = receiver.script.pop(0) if receiver.script else 200
                if step == "hang":
                    time.sleep(2.0)
                    step = 200
                assert isinstance(step, int)
                with receiver.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(headers, body, step))
                self.send_response(step)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        if tls is not None:
            # A failed handshake is an OSError in accept(), which the server skips.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self) -> list[Received]:
        """What a receiver that dedupes on `webhook-id` keeps: the first 2xx of each id."""
        kept: dict[str, Received] = {}
        with self.lock:
            for got in self.received:
                if 200 <= got.status < 300:
                    kept.setdefault(got.webhook_id, got)
        return list(kept.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    created = Receiver()
    yield created
    created.close()


def running_with(**overrides: Any) -> RunningService:
    settings = service_settings(**{**FAST, **overrides})
    ensure_topics(settings)
    return start_service(settings)


def create_with_callback(
    service: RunningService, callback: dict[str, str], execute: bool = True
) -> dict[str, Any]:
    response = service.client.post(
        "/jobs",
        files={"image": ("cat.jpg", image_bytes(), "image/jpeg")},
        data={
            "model": "mobilenet-v2-imagenet-quant",
            "execute": "true" if execute else "false",
            "callback": json.dumps(callback),
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def run_to_done(service: RunningService, jobs: TopicReader, job_id: str) -> None:
    executor = Executor(service.settings)
    (request,) = requests_for(jobs, job_id, 1)
    executor.started(request)
    executor.completed(request)
    wait_status(service.client, job_id, "DONE")


def deliveries(service: RunningService, job_id: str) -> dict[str, Any]:
    response = service.client.get(f"/jobs/{job_id}/deliveries")
    assert response.status_code == 200, response.text
    return dict(response.json())


def settled(service: RunningService, job_id: str, count: int) -> list[dict[str, Any]]:
    def done() -> bool:
        items = deliveries(service, job_id)["items"]
        return len(items) >= count and all(d["state"] != "pending" for d in items)

    wait_for(done, 30, "settled deliveries")
    return list(deliveries(service, job_id)["items"])


def one_job_to_its_end(
    receiver: Receiver, **overrides: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A job with a callback to `receiver`, run to DONE: the job, its settled delivery and
    the client's secret."""
    service = running_with(**overrides)
    jobs = TopicReader(service.settings, service.settings.topic_jobs)
    try:
        job = create_with_callback(service, {"url": receiver.url})
        run_to_done(service, jobs, job["id"])
        (delivery,) = settled(service, job["id"], 1)
        secret = service.client.get("/webhook-secret").json()["secret"]
    finally:
        jobs.close()
        service.stop()
    return job, delivery, secret


def test_the_terminal_event_is_delivered_signed_and_recorded(receiver: Receiver) -> None:
    job, delivery, secret = one_job_to_its_end(receiver)
    (got,) = receiver.received
    event = Webhook(secret).verify(got.body, got.headers)
    assert event["type"] == EventType.COMPLETED.value and event["subject"] == job["id"]
    assert got.headers["content-type"] == "application/cloudevents+json"
    assert delivery["id"] == got.webhook_id and delivery["state"] == "delivered"
    assert delivery["target"] == "callback" and delivery["event_id"] == event["id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [200]


def test_a_500_and_a_timeout_are_retried_under_one_id_then_delivered() -> None:
    receiver = Receiver(500, "hang")
    try:
        _job, delivery, _secret = one_job_to_its_end(receiver)
        # The hung request is recorded when its handler wakes (2 s), which may be after the
        # third attempt was answered and settled.
        wait_for(lambda: len(receiver.received) >= 3, 10, "the hung request's record")
    finally:
        receiver.close()
    assert delivery["state"] == "delivered"
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, None, 200]
    assert "no answer within" in attempts[1]["error"]
    # The receiver saw all three, the timed-out one too, each with the same id.
    assert {got.webhook_id for got in receiver.received} == {delivery["id"]}
    assert len(receiver.received) == 3 and len(receiver.accepted()) == 1


def test_a_hanging_target_does_not_hold_up_another_clients_delivery(receiver: Receiver) -> None:
    hanging = Receiver(*["hang"] * 5)
    service = running_with(webhook_max_attempts=5)
    try:
        everything = {"url": hanging.url, "events": "all"}
        stuck = create_with_callback(service, everything, execute=False)
        wait_for(lambda: bool(hanging.received), 30, "the hanging target's first request")
        # Read by the dispatcher after the stuck event: in a later batch.
        other = create_with_callback(service, {"url": receiver.url, "events": "all"}, False)
        (delivered,) = settled(service, other["id"], 1)
        assert delivered["state"] == "delivered"
        # Its five attempts (1 s read timeout each) are still being made.
        assert all(d["state"] == "pending" for d in deliveries(service, stuck["id"])["items"])
    finally:
        service.stop()
        hanging.close()


def test_the_last_failure_is_dead_lettered() -> None:
    receiver = Receiver(500, 502, 503)
    try:
        _job, delivery, _secret = one_job_to_its_end(receiver)
    finally:
        receiver.close()
    settings = service_settings()  # this test's topics, from its environment
    dead = TopicReader(settings, settings.topic_dead_letter)
    try:
        (letter,) = dead.read(1)
    finally:
        dead.close()
    assert delivery["state"] == "dead" and len(delivery["attempts"]) == 3
    reason = headers_of(letter)["dlq_error"]
    assert f"webhook delivery to {receiver.url} failed after 3 attempts" in reason
    assert "answered 503" in reason
    assert headers_of(letter)["ce_type"] == EventType.COMPLETED.value


def test_subscriptions_get_every_event_with_their_own_secret(receiver: Receiver) -> None:
    service = running_with()
    jobs = TopicReader(service.settings, service.settings.topic_jobs)
    client = service.client
    try:
        refused = client.post("/webhooks", json={"url": "https://10.1.2.3/hook"})
        problem = assert_problem(refused, 422, "invalid-webhook-url")
        assert problem["errors"][0]["pointer"] == "/url"
        made = client.post("/webhooks", json={"url": receiver.url, "events": "all"})
        assert made.status_code == 201, made.text
        subscription = made.json()
        assert subscription["secret"].startswith("whsec_")
        listed = client.get("/webhooks").json()["items"]
        assert listed == [{k: v for k, v in subscription.items() if k != "secret"}]
        time.sleep(1.5)  # the dispatcher reads subscriptions again after a second

        job = create_with_callback(service, {"url": receiver.url}, execute=True)
        run_to_done(service, jobs, job["id"])
        # The job's callback (its end) and the subscription (all four events).
        items = settled(service, job["id"], 5)

        gone = client.delete(f"/webhooks/{subscription['id']}")
        assert gone.status_code == 204
        assert_problem(client.delete(f"/webhooks/{subscription['id']}"), 404, "webhook-not-found")
        assert client.get("/webhooks").json()["items"] == []
    finally:
        jobs.close()
        service.stop()
    by_target = sorted((d["target"], d["event_type"]) for d in items)
    assert by_target == sorted(
        [
            ("callback", EventType.COMPLETED.value),
            *(
                (subscription["id"], kind.value)
                for kind in (
                    EventType.CREATED,
                    EventType.EXECUTION_REQUESTED,
                    EventType.STARTED,
                    EventType.COMPLETED,
                )
            ),
        ]
    )
    for got in receiver.received:
        delivery = next(d for d in items if d["id"] == got.webhook_id)
        if delivery["target"] == subscription["id"]:
            Webhook(subscription["secret"]).verify(got.body, got.headers)


def test_a_deleted_job_leaves_no_webhook_record_behind(receiver: Receiver) -> None:
    service = running_with()
    client = sync_client(service.settings)
    db = client[service.settings.mongodb_database]

    def records(job_id: str) -> int:
        callbacks = db["webhook_callbacks"].count_documents({"_id": job_id})
        return callbacks + db["webhook_deliveries"].count_documents({"job_id": job_id})

    try:
        everything = {"url": receiver.url, "events": "all"}
        kept, deleted = (create_with_callback(service, everything, execute=False) for _ in "ab")
        for job in (kept, deleted):
            settled(service, job["id"], 1)  # `created`, delivered and recorded
        assert service.client.delete(f"/jobs/{deleted['id']}").status_code == 204
        wait_for(lambda: records(deleted["id"]) == 0, 30, "the deleted job's records gone")
        types = [json.loads(got.body)["type"] for got in receiver.received]
        assert EventType.DELETED.value in types  # delivered first, then forgotten
        assert records(kept["id"]) == 2  # its callback and its `created` delivery
        assert len(deliveries(service, kept["id"])["items"]) == 1
    finally:
        client.close()
        service.stop()


def test_a_callback_url_is_checked_at_the_api(receiver: Receiver) -> None:
    service = running_with(webhook_allow_http=False)
    try:
        response = service.client.post(
            "/jobs",
            json={"model": "mobilenet-v2-imagenet-quant", "callback": {"url": receiver.url}},
        )
        problem = assert_problem(response, 422, "invalid-webhook-url")
        assert problem["errors"][0]["pointer"] == "/callback/url"
        assert "https" in problem["detail"]
        metadata = service.client.post(
            "/jobs",
            files={"image": ("cat.jpg", image_bytes(), "image/jpeg")},
            data={
                "model": "mobilenet-v2-imagenet-quant",
                "callback": json.dumps({"url": "https://[::ffff:169.254.169.254]/"}),
            },
        )
        assert_problem(metadata, 422, "invalid-webhook-url")
        bad_json = service.client.post(
            "/jobs",
            files={"image": ("cat.jpg", image_bytes(), "image/jpeg")},
            data={"model": "mobilenet-v2-imagenet-quant", "callback": "{not json"},
        )
        assert_problem(bad_json, 400)
    finally:
        service.stop()


def test_a_dispatcher_restart_mid_delivery_loses_and_repeats_nothing_in_effect() -> None:
    # The first request fails; the next attempt waits 3 s, and the service stops in between.
    receiver = Receiver(500)
    slow = {"webhook_backoff_seconds": 3.0, "webhook_backoff_max_seconds": 3.0}
    service = running_with(**slow)
    settings = service.settings
    jobs = TopicReader(settings, settings.topic_jobs)
    try:
        job = create_with_callback(service, {"url": receiver.url, "events": "all"}, execute=True)
        wait_for(lambda: len(receiver.received) >= 1, 30, "the first attempt")
        service.stop()
        restarted_at = datetime.now(UTC)
        service = start_service(settings)  # same group, topics and database
        run_to_done(service, jobs, job["id"])
        items = settled(service, job["id"], 4)
    finally:
        jobs.close()
        service.stop()
        receiver.close()
    assert all(d["state"] == "delivered" for d in items)
    kinds = sorted(d["event_type"] for d in items)
    assert kinds == sorted(
        k.value
        for k in (
            EventType.CREATED,
            EventType.EXECUTION_REQUESTED,
            EventType.STARTED,
            EventType.COMPLETED,
        )
    )
    # Each event, once in effect: one accepted request per delivery id, and every request
    # for one event (the failed one, any repeat) carried that event's id.
    assert sorted(got.webhook_id for got in receiver.accepted()) == sorted(d["id"] for d in items)
    ids_by_event: dict[str, set[str]] = {}
    for got in receiver.received:
        ids_by_event.setdefault(got.event["id"], set()).add(got.webhook_id)
    assert all(len(ids) == 1 for ids in ids_by_event.values())
    first = receiver.received[0]
    assert first.status == 500
    retried = next(d for d in items if d["id"] == first.webhook_id)
    assert [a["status_code"] for a in retried["attempts"]] == [500, 200]
    # The first attempt was recorded before the stop, the second made after the restart.
    assert datetime.fromisoformat(retried["attempts"][1]["at"]) >= restarted_at.replace(
        microsecond=0
    )


def over_https(certified_name: str, tmp_path: Path) -> tuple[Receiver, dict[str, Any], str]:
    """One job to its end with a callback to an `https` receiver whose certificate, from a
    throwaway CA, is for `certified_name`; the service trusts that CA only through
    WEBHOOK_CA_FILE and takes `https` only. The receiver, the settled delivery, the secret."""
    ca = trustme.CA()
    ca_file = tmp_path / "webhook-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(certified_name).configure_cert(context)
    receiver = Receiver(tls=context)
    try:
        _job, delivery, secret = one_job_to_its_end(
            receiver, webhook_allow_http=False, webhook_ca_file=ca_file
        )
    finally:
        receiver.close()
    return receiver, delivery, secret


def test_https_to_a_receiver_behind_a_private_ca(tmp_path: Path) -> None:
    receiver, delivery, secret = over_https("localhost", tmp_path)
    assert receiver.url.startswith("https://localhost:")
    assert delivery["state"] == "delivered", delivery
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    (got,) = receiver.received
    Webhook(secret).verify(got.body, got.headers)


def test_a_certificate_for_another_name_is_a_failed_attempt_with_its_reason(
    tmp_path: Path,
) -> None:
    receiver, delivery, _secret = over_https("other.test", tmp_path)
    assert delivery["state"] == "dead" and len(delivery["attempts"]) == 3
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None
        assert "certificate verify failed: Hostname mismatch" in attempt["error"], attempt
        assert "'localhost'" in attempt["error"]
    assert receiver.received == []  # nothing was sent over the refused connection
