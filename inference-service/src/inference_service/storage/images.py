"""Image bytes, one document each, read by `_id` (inference_common.image_refs says why).

Images of unfinished jobs live in `images`, where executors read them; once a job is finished
its image moves to `images_archive`, where only `GET /jobs/{id}/image` looks. FerretDB 1.24
(SQLite) finds even an `_id` by reading the rows stored before it, so a read costs in
proportion to the bytes of the collection: measured 12 ms for the oldest of 872 images and
337 ms for the newest. Keeping `images` to the jobs in flight keeps the executors' reads
short however many jobs are kept. MongoDB reads either by its `_id` index and does not mind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from inference_common.image_refs import IMAGE_COLLECTION, image_document

log = logging.getLogger(__name__)

ARCHIVE_COLLECTION: Final = f"{IMAGE_COLLECTION}_archive"


class ImageStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._images = db[IMAGE_COLLECTION]
        self._archive = db[ARCHIVE_COLLECTION]

    async def put(self, data: bytes, *, media_type: str, owner: str) -> str:
        image_id = ObjectId()
        await self._images.insert_one(image_document(image_id, data, media_type, owner))
        return str(image_id)

    async def get(self, image_id: str) -> bytes | None:
        try:
            key = ObjectId(image_id)
        except InvalidId:
            return None
        for collection in (self._images, self._archive):
            document = await collection.find_one({"_id": key})
            if document is not None:
                return bytes(document["data"])
        return None

    async def archive(self, image_id: str) -> None:
        """Move a finished job's image out of the executors' way. Idempotent: a copy already
        archived is kept, and the original is removed only once the copy exists."""
        key = ObjectId(image_id)
        document = await self._images.find_one({"_id": key})
        if document is None:
            return
        with contextlib.suppress(DuplicateKeyError):
            await self._archive.insert_one(document)
        await self._images.delete_one({"_id": key})

    async def delete(self, image_id: str) -> None:
        """Idempotent: an image already gone is fine (a retried delete, a purge)."""
        try:
            key = ObjectId(image_id)
        except InvalidId:
            return
        await self._images.delete_one({"_id": key})
        await self._archive.delete_one({"_id": key})


class ImageArchiver:
    """Archives the images of finished jobs in the background, off the fold's path. A crash
    loses only queued moves: those images stay where they are, readable and merely slower."""

    def __init__(self, images: ImageStore, size: int = 10_000) -> None:
        self._images = images
        self._queue: asyncio.Queue[str] = asyncio.Queue(size)

    def finished(self, job: dict[str, Any]) -> None:
        image = job.get("image")
        if image and not job.get("deleted"):
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(image["file_id"])

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not getter.done():
                getter.cancel()
                return
            try:
                await self._images.archive(getter.result())
            except PyMongoError as exc:
                log.warning("image %s stays in %s: %s", getter.result(), IMAGE_COLLECTION, exc)
