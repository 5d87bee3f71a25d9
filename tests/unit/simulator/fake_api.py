"""An in-memory job API behind httpx.MockTransport, for the traffic loop's unit tests.

It follows openapi/inference-api.yaml where the simulator relies on it: jobs created with
`execute=true` go QUEUED → RUNNING → DONE (or FAILED) after `run_s`, each change is sent on
`GET /events` as a structured CloudEvent, results and problems have the contract's shapes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec

import httpx
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from inference_client import InferenceClient, RetryPolicy
from inference_common.events import EventType, new_event
from tests.unit.simulator import job_events as ev

P = ParamSpec("P")
BASE = "http://127.0.0.1:8080/api/v1/inference"
MODELS = [
    {
        "name": "cls",
        "title": "C",
        "task": "classification",
        "default_options": {},
        "label_count": 1001,
    },
    {
        "name": "det",
        "title": "D",
        "task": "object_detection",
        "default_options": {},
        "label_count": 90,
    },
]


def problem(status: int, kind: str, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": f"https://cvinference.example/problems/{kind}", "title": kind, "status": status}
    return httpx.Response(
        status,
        json={**body, "detail": detail, **extra},
        headers={"content-type": "application/problem+json"},
    )


def form_field(body: bytes, name: str) -> str | None:
    match = re.search(rb'name="' + name.encode() + rb'"\r\n\r\n(.*?)\r\n--', body, re.S)
    return match.group(1).decode() if match else None


def create_fields(request: httpx.Request) -> dict[str, str]:
    """A create's fields: the form's (with a callback), else the query's (a raw image body)."""
    if request.headers.get("content-type", "").startswith("multipart/"):
        body = request.read()
        names = ("model", "name", "execute", "callback")
        return {name: value for name in names if (value := form_field(body, name)) is not None}
    return dict(request.url.params)


@dataclass
class FakeApi:
    run_s: float = 0.02
    failing_models: set[str] = field(default_factory=set)
    stuck_models: set[str] = field(default_factory=set)
    rejected_models: set[str] = field(default_factory=set)
    unavailable_creates: int = 0  # answer this many creates with 503 first
    events_enabled: bool = True
    send_events: bool = True
    # The job's record turns final this long after its event (the job service folds results
    # in after the event stream has seen them).
    fold_lag_s: float = 0.0
    # The job is finished, and its event sent, before the create request is answered.
    finish_before_answer: bool = False

    def __post_init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.idempotency_keys: list[str] = []
        self.streams: list[asyncio.Queue[bytes]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_by_key: dict[str, str] = {}
        # Webhooks: the callback of each job that named one, and what was delivered.
        self.secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        self.callbacks: dict[str, str] = {}
        self.deliveries: dict[str, list[dict[str, Any]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def client(self, **kwargs: Any) -> InferenceClient:
        kwargs.setdefault("policy", RetryPolicy(backoff_s=0.001, max_backoff_s=0.01))
        return InferenceClient(BASE, transport=httpx.MockTransport(self.handle), **kwargs)

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.requests if m == method and re.fullmatch(pattern, p))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1/inference")
        self.requests.append((request.method, path))
        if request.method == "GET" and path == "/events":
            return self._events()
        read = self._read_only(request.method, path)
        if read is not None:
            return read
        if request.method == "POST" and path == "/jobs":
            response = self._create(request)
            if self.finish_before_answer:
                await asyncio.sleep(0.05)  # the event stream delivers before this answer
            return response
        if path.startswith("/batches"):
            return self._batch_operation(request, path)
        match = re.fullmatch(r"/jobs/([0-9a-f]{32})(/result|/execution|/cancellation)?", path)
        job = self.jobs.get(match.group(1)) if match else None
        if match is None or job is None:
            return problem(404, "not-found", f"{request.method} {path}")
        if request.method == "GET" and not match.group(2) and "wait" in request.url.params:
            await self._long_poll(job, float(request.url.params["wait"]))
        return self._job_operation(request.method, match.group(2) or "", job)

    def _read_only(self, method: str, path: str) -> httpx.Response | None:
        """The models, the webhook secret and a job's deliveries: answers that change nothing."""
        if method == "GET" and path == "/models":
            return httpx.Response(200, json={"items": MODELS})
        if method == "GET" and path == "/webhook-secret":
            return httpx.Response(200, json={"secret": self.secret})
        deliveries = re.fullmatch(r"/jobs/([0-9a-f]{32})/deliveries", path)
        if method == "GET" and deliveries:
            return httpx.Response(200, json={"items": self.deliveries.get(deliveries[1], [])})
        return None

    async def _long_poll(self, job: dict[str, Any], wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while job["status"] in ("NEW", "QUEUED") and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def _job_operation(self, method: str, operation: str, job: dict[str, Any]) -> httpx.Response:
        if (method, operation) == ("GET", ""):
            return httpx.Response(200, json=job)
        if (method, operation) == ("GET", "/result"):
            return self._result(job)
        if (method, operation) == ("DELETE", ""):
            del self.jobs[job["id"]]
            return httpx.Response(204)
        if (method, operation) == ("POST", "/execution") and job["status"] == "NEW":
            self._queue(job)
            return httpx.Response(202, json=job)
        if (method, operation) == ("POST", "/cancellation") and job["status"] in ("NEW", "QUEUED"):
            job["status"] = "CANCELLED"
            return httpx.Response(200, json=job)
        return problem(409, "job-status-conflict", f"the job is {job['status']}")

    def _queue(self, job: dict[str, Any]) -> None:
        job["status"], job["attempt"] = "QUEUED", job["attempt"] + 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if job["model"] in self.stuck_models:
            return
        if self.finish_before_answer:
            self._finish(job["id"])
        else:
            asyncio.get_running_loop().call_later(self.run_s, self._finish, job["id"])

    def _create(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        self.idempotency_keys.append(key)
        if self.unavailable_creates > 0:
            self.unavailable_creates -= 1
            return problem(
                503,
                "unavailable",
                "try again",
            )
        if key in self.by_key:
            return httpx.Response(200, json=self.jobs[self.by_key[key]])
        body, fields = request.read(), create_fields(request)
        model = fields.get("model", "")
        if model in self.rejected_models:
            return problem(422, "unknown-model", f"no model {model}")
        if b"not an image" in body:
            return problem(422, "image-unreadable", "cannot identify image file")
        job_id = uuid.uuid4().hex
        job = {
            "id": job_id,
            "name": fields.get("name"),
            "model": model,
            "status": "NEW",
            "attempt": 0,
            "error": None,
        }
        self.jobs[job_id] = job
        self.by_key[key] = job_id
        callback = fields.get("callback")
        if callback:
            self.callbacks[job_id] = json.loads(callback)["url"]
        if fields.get("execute") == "true":
            self._queue(job)
        return httpx.Response(201, json=job)

    def _batch_operation(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "POST" and path == "/batches":
            return self._create_batch(request)
        match = re.fullmatch(r"/batches/([0-9a-f]{32})(/results)?", path)
        batch = self.batches.get(match.group(1)) if match else None
        if match is None or batch is None:
            return problem(404, "batch-not-found", path)
        view = self._batch_view(batch)
        if not match.group(2):
            return httpx.Response(200, json=view)
        if not view["finished"]:
            return problem(409, "batch-not-finished", "not yet", counts=view["counts"])
        lines = [self._result_line(file) for file in batch["files"]]
        return httpx.Response(200, text="".join(json.dumps(line) + "\n" for line in lines))

    def _create_batch(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        self.idempotency_keys.append(key)
        if key in self.batch_by_key:
            return httpx.Response(200, json=self._batch_view(self.batches[self.batch_by_key[key]]))
        body = request.read()
        model = form_field(body, "model") or ""
        parts = re.findall(
            rb'name="files"; filename="([^"]*)"\r\nContent-Type: [^\r]*\r\n\r\n(.*?)\r\n--',
            body,
            re.S,
        )
        files = []
        for index, (name, data) in enumerate(parts):
            file: dict[str, Any] = {"index": index, "name": name.decode(), "job_id": None}
            if b"not an image" in data:
                file["problem"] = {"type": "urn:p:unsupported-image-type", "title": "Unsupported",
                                   "status": 415, "detail": "not an image"}  # fmt: skip
            else:
                job_id = uuid.uuid4().hex
                job = {"id": job_id, "name": file["name"], "model": model, "status": "NEW",
                       "attempt": 0, "error": None}  # fmt: skip
                self.jobs[job_id] = job
                self._queue(job)
                file["job_id"] = job_id
            files.append(file)
        batch = {"id": uuid.uuid4().hex, "model": model, "files": files}
        self.batches[batch["id"]] = batch
        self.batch_by_key[key] = batch["id"]
        return httpx.Response(201, json=self._batch_view(batch))

    def _batch_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        counts = dict.fromkeys(
            ["NEW", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "REJECTED", "DELETED"], 0
        )
        for file in batch["files"]:
            job = self.jobs.get(file["job_id"] or "")
            status = "REJECTED" if file["job_id"] is None else job["status"] if job else "DELETED"
            counts[status] += 1
        done = sum(counts[s] for s in ("DONE", "FAILED", "CANCELLED", "REJECTED", "DELETED"))
        total = len(batch["files"])
        return {
            "id": batch["id"],
            "model": batch["model"],
            "total": total,
            "counts": counts,
            "progress": done / total if total else 1.0,
            "finished": done == total,
            "rejected": [f for f in batch["files"] if f["job_id"] is None],
        }

    def _result_line(self, file: dict[str, Any]) -> dict[str, Any]:
        line = {key: file[key] for key in ("index", "name", "job_id")}
        job = self.jobs.get(file["job_id"] or "")
        if job is None:
            return {**line, "status": "REJECTED", "problem": file.get("problem")}
        if job["status"] == "DONE":
            return {**line, "status": "DONE", "result": ev.classification()}
        problem_body = {"type": "urn:p:job-failed", "title": "Conflict", "status": 409,
                        "error": job["error"]}  # fmt: skip
        return {**line, "status": job["status"], "problem": problem_body}

    def _finish(self, job_id: str) -> None:
        self.in_flight -= 1
        job = self.jobs.get(job_id)
        if job is None or job["status"] != "QUEUED":
            return  # deleted or cancelled meanwhile
        if job["model"] in self.failing_models:
            self._publish(EventType.FAILED, job_id, ev.failed(job_id))
            outcome = {
                "status": "FAILED",
                "error": {"code": "image_unreadable", "message": "cannot identify image file"},
            }
        else:
            self._publish(EventType.COMPLETED, job_id, ev.completed(job_id))
            outcome = {"status": "DONE"}
            if job_id in self.callbacks:
                task = asyncio.get_running_loop().create_task(self._deliver(job_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        if self.fold_lag_s > 0:
            asyncio.get_running_loop().call_later(self.fold_lag_s, job.update, outcome)
        else:
            job.update(outcome)

    async def _deliver(self, job_id: str) -> None:
        """POST the completed event, signed, to the job's callback (a real receiver)."""
        body = (
            JSONFormat()
            .write(
                new_event(EventType.COMPLETED, "/executor-service", job_id, ev.completed(job_id))
            )
            .decode()
        )
        webhook_id = f"msg_{job_id}"
        at = datetime.now(UTC)
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(self.secret).sign(webhook_id, at, body),
        }
        async with httpx.AsyncClient() as http:
            answer = await http.post(self.callbacks[job_id], content=body, headers=headers)
        self.deliveries[job_id] = [
            {
                "id": webhook_id,
                "state": "delivered" if answer.is_success else "dead",
                "attempts": [{"attempt": 1, "status_code": answer.status_code}],
            }
        ]

    def _result(self, job: dict[str, Any]) -> httpx.Response:
        if job["status"] != "DONE":
            return problem(
                409, "job-not-done", f"the job is {job['status']}", job_status=job["status"]
            )
        return httpx.Response(200, json={"job_id": job["id"], "result": ev.classification()})

    def _publish(self, event_type: EventType, job_id: str, data: dict[str, Any]) -> None:
        if not self.send_events:
            return
        body = JSONFormat().write(new_event(event_type, "/executor-service", job_id, data))
        frame = b"event: " + event_type.value.encode() + b"\ndata: " + body + b"\n\n"
        for queue in self.streams:
            queue.put_nowait(frame)

    def drop_streams(self) -> None:
        """Ends every open event stream, as a restart of the service does."""
        for queue in self.streams:
            queue.put_nowait(b"")
        self.streams.clear()

    def _events(self) -> httpx.Response:
        if not self.events_enabled:
            return problem(404, "not-found", "no event stream here")
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.streams.append(queue)

        async def frames() -> AsyncIterator[bytes]:
            yield b": subscribed\n\n"
            while frame := await queue.get():
                yield frame

        return httpx.Response(200, content=frames(), headers={"content-type": "text/event-stream"})


def synchronously(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test on a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
