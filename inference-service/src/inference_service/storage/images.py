"""Image bytes, one document each, read by `_id` (inference_common.image_refs says why)."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.database import AsyncDatabase

from inference_common.image_refs import IMAGE_COLLECTION, image_document


class ImageStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._images = db[IMAGE_COLLECTION]

    async def put(self, data: bytes, *, media_type: str, owner: str) -> str:
        image_id = ObjectId()
        await self._images.insert_one(image_document(image_id, data, media_type, owner))
        return str(image_id)

    async def get(self, image_id: str) -> bytes | None:
        try:
            document = await self._images.find_one({"_id": ObjectId(image_id)})
        except InvalidId:
            return None
        return None if document is None else bytes(document["data"])

    async def delete(self, image_id: str) -> None:
        """Idempotent: an image already gone is fine (a retried delete, a purge)."""
        try:
            await self._images.delete_one({"_id": ObjectId(image_id)})
        except InvalidId:
            return
