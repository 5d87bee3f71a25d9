"""`simulate --scenario demo`: every operation of the API once, narrated.

Meant to run next to `simulator watch`, so the audience sees each call and the events it
causes. Each step says what it sent and what came back; a step that does not get the answer
the contract promises is marked and makes the exit code 1.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rich.console import Console
from rich.markup import escape

from inference_client import (
    ApiError,
    ApiFailure,
    ImageUpload,
    InferenceClient,
    Job,
    Model,
    UnexpectedResponse,
)
from inference_common.assets import Manifest
from simulator.event_lines import describe_result, short_id
from simulator.images import SampleImages, is_digit_model
from simulator.webhook_receiver import WebhookReceiver

WAIT_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.25
PREFERRED_IMAGES: Final = {
    "classification": "cat",
    "object_detection": "kite_and_cold",
    "describe": "kite_and_cold",
}
# A small batch: enough files to watch its counts move.
BATCH_PHOTOS: Final = 3
NOT_AN_IMAGE: Final = ImageUpload("notes.png", b"these bytes are not an image", "image/png")


@dataclass
class Narrator:
    console: Console
    steps: int = 0
    surprises: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        self.steps += 1
        self.console.print(f"\n[bold]{self.steps}. {escape(text)}[/]")

    def said(self, text: str) -> None:
        self.console.print(f"   {text}")

    def surprise(self, text: str) -> None:
        self.surprises.append(text)
        self.console.print(f"   [bold red]unexpected:[/] {escape(text)}")


class DemoScenario:
    def __init__(
        self,
        client: InferenceClient,
        models: Sequence[Model],
        images: SampleImages,
        console: Console,
        digit_models: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.models = models
        self.images = images
        self.narrator = Narrator(console)
        self.digit_models = digit_models

    async def run(self) -> int:
        n = self.narrator
        n.step("GET /models: what can run")
        for model in self.models:
            labels = "" if model.label_count is None else f", {model.label_count} labels"
            n.said(f"{model.name} [dim]({model.task}{labels})[/]")
        await self._create_then_execute()
        for model in self._one_per_kind():
            await self._create_and_execute(model)
        await self._cancel_and_delete()
        await self._webhook()
        await self._reject_garbage()
        await self._small_batch()
        if n.surprises:
            n.console.print(f"\n[bold red]{len(n.surprises)} step(s) did not go as expected[/]")
            return 1
        n.console.print(f"\n[bold green]demo finished: {n.steps} steps as expected[/]")
        return 0

    def _one_per_kind(self) -> list[Model]:
        """One detector, one description and one digit model, when the API has them."""
        detectors = [m for m in self.models if m.task == "object_detection"]
        describers = [m for m in self.models if m.task == "describe"]
        digits = [m for m in self.models if m.name in self.digit_models]
        return detectors[:1] + describers[:1] + digits[:1]

    def _photo_classifier(self) -> Model:
        photo = [
            m for m in self.models if m.task == "classification" and m.name not in self.digit_models
        ]
        return (photo or list(self.models))[0]

    async def _create_then_execute(self) -> None:
        n, model = self.narrator, self._photo_classifier()
        image = self._image_for(model)
        n.step(f"POST /jobs without execute: create a {model.name} job for {image.name}")
        job = await self._create(model, image, execute=False)
        if job is None:
            return
        n.step("GET /jobs/{id}/result before it ran: the API answers with a problem")
        try:
            await self.client.get_result(job.id)
            n.surprise("a result for a job that never ran")
        except ApiError as exc:
            n.said(f"{exc.status} {escape(exc.title)}: {escape(exc.detail)} [dim]({exc.type})[/]")
        n.step(f"POST /jobs/{short_id(job.id)}/execution: run it")
        try:
            await self.client.execute_job(job.id)
            n.said("202 Accepted")
        except (ApiFailure, UnexpectedResponse) as exc:
            n.surprise(str(exc))
            return
        await self._wait_and_read(job)

    async def _create_and_execute(self, model: Model) -> None:
        image = self._image_for(model)
        self.narrator.step(
            f"POST /jobs with execute=true: {model.name} on {image.name} in one call"
        )
        job = await self._create(model, image, execute=True)
        if job is not None:
            await self._wait_and_read(job)

    async def _cancel_and_delete(self) -> None:
        n, model = self.narrator, self._photo_classifier()
        n.step("POST /jobs then POST /jobs/{id}/cancellation: cancel a job before it runs")
        job = await self._create(model, self._image_for(model), execute=False)
        if job is None:
            return
        try:
            cancelled = await self.client.cancel_job(job.id, reason="demo: cancelled on purpose")
            job = cancelled or await self.client.get_job(job.id)
            n.said(f"job {short_id(job.id)}: {job.status}")
            if job.status != "CANCELLED":
                n.surprise(f"status {job.status} after cancellation")
        except (ApiFailure, UnexpectedResponse) as exc:
            n.surprise(str(exc))
        n.step(f"DELETE /jobs/{short_id(job.id)}, then GET it")
        try:
            await self.client.delete_job(job.id)
            n.said("204 No Content")
            await self.client.get_job(job.id)
            n.surprise("the deleted job is still there")
        except ApiError as exc:
            expected = exc.method == "GET" and exc.status in (404, 410)
            (n.said if expected else n.surprise)(f"{exc.status} {exc.title}: {exc.detail}")
        except (ApiFailure, UnexpectedResponse) as exc:
            n.surprise(str(exc))

    async def _webhook(self) -> None:
        n, model = self.narrator, self._photo_classifier()
        n.step("POST /jobs with a callback: the job's end is POSTed, signed, to a receiver")
        try:
            secret = await self.client.webhook_secret()
            async with WebhookReceiver(secret) as receiver:
                n.said(f"a receiver listens on {receiver.url} (GET /webhook-secret signs)")
                job = await self.client.create_job(
                    self._image_for(model),
                    name="demo-webhook",
                    model=model.name,
                    idempotency_key=str(uuid.uuid4()),
                    execute=True,
                    callback={"url": receiver.url, "events": "terminal"},
                )
                n.said(f"201 Created: job {job.id} {job.status}")
                async with asyncio.timeout(WAIT_TIMEOUT_S):
                    got = await receiver.deliveries.get()
            event = got.event
            n.said(
                f"received [green]{escape(event['type'])}[/] for job {short_id(event['subject'])}"
                f", signature verified [dim](webhook-id {got.webhook_id})[/]"
            )
            # The service records the attempt once the receiver has answered it.
            async with asyncio.timeout(WAIT_TIMEOUT_S):
                while not (recorded := await self.client.job_deliveries(job.id)):
                    await asyncio.sleep(POLL_S)
            delivery = recorded[0]
            attempts = len(delivery["attempts"])
            state = delivery["state"]
            n.said(f"GET /jobs/{short_id(job.id)}/deliveries: {state} in {attempts} attempt(s)")
        except ApiError as exc:
            hint = ""
            if exc.type.endswith("invalid-webhook-url"):
                hint = " (the service must run with WEBHOOK_ALLOW_LOOPBACK and WEBHOOK_ALLOW_HTTP)"
            n.surprise(f"{exc.status} {exc.title}: {exc.detail}{hint}")
        except TimeoutError:
            n.surprise(f"no webhook delivery within {WAIT_TIMEOUT_S:g} s")
        except (ApiFailure, UnexpectedResponse, ValueError) as exc:
            n.surprise(str(exc))

    async def _reject_garbage(self) -> None:
        n, model = self.narrator, self._photo_classifier()
        n.step("POST /jobs with bytes that are not an image: rejected up front")
        try:
            job = await self.client.create_job(
                NOT_AN_IMAGE,
                name="demo-not-an-image",
                model=model.name,
                idempotency_key=str(uuid.uuid4()),
                execute=True,
            )
        except ApiError as exc:
            n.said(f"{exc.status} {escape(exc.title)}: {escape(exc.detail)} [dim]({exc.type})[/]")
            return
        except (ApiFailure, UnexpectedResponse) as exc:
            n.surprise(str(exc))
            return
        # Accepted: then the executor must fail it, which is the other honest answer.
        finished = await self._wait(job)
        if finished is not None:
            error = finished.error.code if finished.error else "no error"
            report = n.said if finished.status == "FAILED" else n.surprise
            report(f"accepted, then {finished.status} ({error})")

    async def _small_batch(self) -> None:
        """A few photos and one bad file as one batch: its counts as it runs, then its
        results, one JSON line per file."""
        n, model = self.narrator, self._photo_classifier()
        photos = list(self.images.for_model(model.name))[:BATCH_PHOTOS]
        n.step(f"POST /batches: {len(photos)} photos and one bad file as one {model.name} batch")
        try:
            batch = await self.client.create_batch(
                [*photos, NOT_AN_IMAGE], model=model.name, idempotency_key=str(uuid.uuid4())
            )
            n.said(f"201 Created: batch {batch.id}, {batch.total} files")
            for rejected in batch.rejected:
                detail = rejected.problem.get("detail", "")
                n.said(f"rejected {escape(rejected.name)}: {escape(str(detail))}")
            async with asyncio.timeout(WAIT_TIMEOUT_S):
                shown = ""
                while True:
                    counts = " ".join(f"{s}={c}" for s, c in batch.counts.items() if c)
                    if counts != shown:
                        shown = counts
                        n.said(f"GET /batches/{short_id(batch.id)}: {batch.progress:.0%} {counts}")
                    if batch.finished:
                        break
                    await asyncio.sleep(POLL_S)
                    batch = await self.client.get_batch(batch.id)
            lines = await self.client.batch_results(batch.id)
        except TimeoutError:
            n.surprise(f"the batch is not finished after {WAIT_TIMEOUT_S:g} s")
            return
        except (ApiFailure, UnexpectedResponse) as exc:
            n.surprise(str(exc))
            return
        n.said(f"GET /batches/{short_id(batch.id)}/results: {len(lines)} JSON lines")
        for line in lines:
            outcome = line.get("result") or (line.get("problem") or {}).get("detail", "")
            text = _describe({"result": outcome}) if line.get("result") else str(outcome)
            n.said(f"  {escape(str(line['name']))} {line['status']}: {escape(text)}")
        if [line["status"] for line in lines] != ["DONE"] * len(photos) + ["REJECTED"]:
            n.surprise("the results are not every photo DONE and the bad file REJECTED")

    async def _create(self, model: Model, image: ImageUpload, execute: bool) -> Job | None:
        try:
            job = await self.client.create_job(
                image,
                name=f"demo-{model.name}",
                model=model.name,
                idempotency_key=str(uuid.uuid4()),
                execute=execute,
            )
        except (ApiFailure, UnexpectedResponse) as exc:
            self.narrator.surprise(str(exc))
            return None
        self.narrator.said(f"201 Created: job {job.id} {job.status}")
        return job

    async def _wait_and_read(self, job: Job) -> None:
        n = self.narrator
        finished = await self._wait(job)
        if finished is None:
            return
        job = finished
        if job.status != "DONE":
            n.surprise(f"job {short_id(job.id)} ended {job.status}: {job.error}")
            return
        try:
            result = await self.client.get_result(job.id)
        except (ApiFailure, UnexpectedResponse) as exc:
            n.surprise(str(exc))
            return
        n.said(f"GET /jobs/{short_id(job.id)}/result: [green]{escape(_describe(result))}[/]")

    async def _wait(self, job: Job) -> Job | None:
        """Poll until terminal, narrating each status change; None (narrated) if it never is."""
        seen = job.status
        try:
            async with asyncio.timeout(WAIT_TIMEOUT_S):
                while not job.terminal:
                    await asyncio.sleep(POLL_S)
                    job = await self.client.get_job(job.id)
                    if job.status != seen:
                        seen = job.status
                        self.narrator.said(f"job {short_id(job.id)}: {job.status}")
        except TimeoutError:
            self.narrator.surprise(
                f"job {short_id(job.id)} still {seen} after {WAIT_TIMEOUT_S:g} s"
            )
            return None
        except (ApiFailure, UnexpectedResponse) as exc:
            self.narrator.surprise(str(exc))
            return None
        return job

    def _image_for(self, model: Model) -> ImageUpload:
        images = self.images.for_model(model.name)
        wanted = PREFERRED_IMAGES.get(model.task, "")
        named = [i for i in images if wanted and i.name.startswith(wanted)]
        return (named or list(images))[0]


def _describe(result: dict[str, Any]) -> str:
    inner = result.get("result", result)
    try:
        return describe_result(inner)
    except (KeyError, TypeError, ValueError, IndexError):
        return str(result)[:200]


def digit_model_names(models: Sequence[Model], manifest: Manifest | None) -> frozenset[str]:
    return frozenset(m.name for m in models if is_digit_model(m, manifest))
