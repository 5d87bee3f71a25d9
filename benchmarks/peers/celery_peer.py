"""Peer 2: the asynchronous stack teams assemble by hand. A Starlette endpoint sends each image
(base64 in JSON) as a Celery task through Redis, the broker and the result backend, and waits
for the result; prefork workers hold the model, acknowledge late and prefetch one task.

    celery -A benchmarks.peers.celery_peer worker --pool prefork --concurrency 2
    uvicorn benchmarks.peers.celery_peer:app --workers 2 --http httptools --loop uvloop

REDIS_URL (default redis://127.0.0.1:6379/0) says where Redis is.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.peers.classifier import Classifier

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RESULT_TIMEOUT_S = 30.0

celery_app = Celery("peer", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
)

_classifier: list[Classifier] = []  # one per prefork child, loaded as it starts


def _load_model(**_: Any) -> None:
    _classifier.append(Classifier())


def _classify(image_b64: str) -> list[dict[str, Any]]:
    return _classifier[0].classify(base64.b64decode(image_b64))


# Registered by calls rather than as decorators: Celery has no type hints.
worker_process_init.connect(_load_model)
classify_task = celery_app.task(name="classify")(_classify)


async def classify(request: Request) -> JSONResponse:
    data = await request.body()
    pending = classify_task.delay(base64.b64encode(data).decode("ascii"))
    # AsyncResult.get blocks; Celery keeps one result backend (and Redis connection) per thread.
    classes = await run_in_threadpool(pending.get, timeout=RESULT_TIMEOUT_S)
    return JSONResponse({"classes": classes})


app = Starlette(routes=[Route("/", classify, methods=["POST"])])
