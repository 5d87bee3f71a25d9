"""Peer 1: the synchronous endpoint a user writes in an afternoon. Each uvicorn worker process
holds its own interpreter and classifies the posted image in the request.

    uvicorn benchmarks.peers.sync_endpoint:app --workers 2 --http httptools --loop uvloop

POST / with the image as the body answers {"classes": [{"label", "score"}, ...]}.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from PIL import UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.peers.classifier import Classifier

_classifier: list[Classifier] = []  # one per worker process, loaded at startup


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    _classifier.append(Classifier())
    yield


async def classify(request: Request) -> JSONResponse:
    data = await request.body()
    try:
        # Called on the event loop: the work is CPU-bound and the process has one core's
        # worth of it to give, so a thread pool would only add a hand-over.
        classes = _classifier[0].classify(data)
    except (UnidentifiedImageError, OSError) as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    return JSONResponse({"classes": classes})


app = Starlette(routes=[Route("/", classify, methods=["POST"])], lifespan=lifespan)
