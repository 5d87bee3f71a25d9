"""The lease store on MongoDB: named leases with expiry (one document each, by `_id`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from inference_service.adapters.documents import translated
from inference_service.domain.clock import now


class MongoLeaseStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._leases = db["leases"]

    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        moment = now()
        with translated():
            try:
                lease = await self._leases.find_one_and_update(
                    {"_id": name, "$or": [{"holder": holder}, {"expires_at": {"$lt": moment}}]},
                    {
                        "$set": {
                            "holder": holder,
                            "expires_at": moment + timedelta(seconds=ttl_seconds),
                        }
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                # The document exists and the filter did not match: someone else holds it.
                return False
        return lease is not None and lease.get("holder") == holder

    async def release(self, name: str, holder: str) -> None:
        with translated():
            await self._leases.delete_one({"_id": name, "holder": holder})
