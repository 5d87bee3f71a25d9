"""Image bytes in the GridFS bucket `images`; events carry only gridfs://images/<id>."""

from __future__ import annotations

import contextlib
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.database import AsyncDatabase

from inference_service.domain.jobs import IMAGE_BUCKET


class ImageStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._bucket = AsyncGridFSBucket(db, bucket_name=IMAGE_BUCKET)

    async def put(self, data: bytes, *, media_type: str, owner: str) -> str:
        file_id = await self._bucket.upload_from_stream(
            "image", data, metadata={"media_type": media_type, "owner": owner}
        )
        return str(file_id)

    async def get(self, file_id: str) -> bytes | None:
        try:
            stream = await self._bucket.open_download_stream(ObjectId(file_id))
        except (NoFile, InvalidId):
            return None
        data: bytes = await stream.read()
        return data

    async def delete(self, file_id: str) -> None:
        """Idempotent: an image already gone is fine (a retried delete, a purge)."""
        with contextlib.suppress(NoFile, InvalidId):
            await self._bucket.delete(ObjectId(file_id))
