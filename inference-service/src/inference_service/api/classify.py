"""The synchronous classify operations: read the image, run a job through the classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from connexion import request as current_request
from starlette.datastructures import UploadFile

from inference_service.api.handlers import Answer, answer, raw_body
from inference_service.api.problems import Problem
from inference_service.api.security import owner_of
from inference_service.api.telemetry import request_span
from inference_service.domain.catalog import CatalogEntry, ModelCatalog, UnknownModel
from inference_service.domain.images import ImageTooLarge, InvalidImage, check_size
from inference_service.domain.job import Job, JobResult
from inference_service.service_layer.jobs import NewJob
from inference_service.service_layer.waiting import Classifier

DEFAULT_DIGIT_MODEL: Final = "mnist-lstm-tflm-float32"
DIGITS: Final = tuple(str(digit) for digit in range(10))


class ClassifyServices(Protocol):
    @property
    def catalog(self) -> ModelCatalog: ...
    @property
    def classifier(self) -> Classifier: ...


class NotADigitModel(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is not a digit (MNIST) model; GET /models lists them")


class NotAClassifier(ValueError):
    def __init__(self, name: str, task: str) -> None:
        super().__init__(f"{name!r} is a {task} model; classify needs a classification model")


def _is_form() -> bool:
    return str(current_request.headers.get("content-type", "")).startswith("multipart/")


@dataclass(eq=False)
class ClassifyApi:
    services: ClassifyServices
    max_image_bytes: int

    async def mnist(
        self,
        body: Any = None,
        image: UploadFile | None = None,
        model: str | None = None,
        user: str | None = None,
    ) -> Answer:
        """Every problem with the input is 404, as the challenge's brief asks."""
        name = model or DEFAULT_DIGIT_MODEL
        try:
            entry = self.services.catalog.get(name)
            if entry.spec.task != "classification" or entry.labels != DIGITS:
                raise NotADigitModel(name)
            data = await self._image(body, image)
            job = await self._run(user, entry, data, top_k=len(DIGITS))
        except (UnknownModel, NotADigitModel) as exc:
            raise Problem(404, str(exc), "unknown-model") from None
        except (InvalidImage, ImageTooLarge) as exc:
            raise Problem(404, str(exc), exc.code) from None
        classes = _result(job).result["classes"]
        probabilities = [0.0] * len(DIGITS)
        for found in classes:
            probabilities[int(found["index"])] = float(found["score"])
        return answer(
            {
                "digit": int(classes[0]["index"]),
                "probabilities": probabilities,
                "model": name,
                "job_id": job.id,
            }
        )

    async def model(
        self,
        model: str,
        body: Any = None,
        image: UploadFile | None = None,
        top_k: int | None = None,
        user: str | None = None,
    ) -> Answer:
        try:
            entry = self.services.catalog.get(model)
        except UnknownModel as exc:
            raise Problem(404, str(exc), "model-not-found") from None
        if entry.spec.task != "classification":
            raise Problem(422, str(NotAClassifier(model, entry.spec.task)), "not-a-classifier")
        data = await self._image(body, image)
        job = await self._run(user, entry, data, top_k=top_k)
        return answer({"classes": _result(job).result["classes"], "model": model, "job_id": job.id})

    async def _image(self, body: Any, image: UploadFile | None) -> bytes:
        """The raw body, or the multipart field `image` (a file, or a plain field)."""
        if image is not None:
            if image.size is not None:
                check_size(image.size, self.max_image_bytes)
            return await image.read()
        if isinstance(body, dict):
            # Connexion hands an empty raw body over as an empty dict too.
            field = body.get("image")
            if field is None and _is_form():
                raise InvalidImage("the form has no `image` field", "missing-image")
            body = field
        return raw_body(body, self.max_image_bytes)

    async def _run(
        self, user: str | None, entry: CatalogEntry, data: bytes, top_k: int | None
    ) -> Job:
        return await self.services.classifier.classify(
            NewJob(
                owner=owner_of(user),
                name="classify",
                model=entry.spec.name,
                options={"top_k": top_k} if top_k is not None else {},
                image=data,
                execute=True,
                span=request_span(),
            )
        )


def _result(job: Job) -> JobResult:
    assert job.result is not None, "the classifier answers DONE jobs only"
    return job.result
