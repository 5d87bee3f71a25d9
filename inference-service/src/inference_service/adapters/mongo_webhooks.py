"""The webhook store on MongoDB and FerretDB: four collections, every write by `_id`.

`webhook_callbacks` (a job's callback, by job id), `webhook_subscriptions`,
`webhook_secrets` (a client's callback secret, by client) and `webhook_deliveries` (one
document per delivery, replaced whole by its one writer). A secret is created with an
insert, which the unique `_id` makes atomic on FerretDB too: two replicas asking at once keep
one secret. Reading a job's deliveries uses an index on MongoDB and a scan on FerretDB.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from inference_service.adapters.documents import Document, translated
from inference_service.domain.clock import as_utc
from inference_service.domain.webhooks import (
    Attempt,
    Callback,
    Delivery,
    DeliveryState,
    EventsWanted,
    Subscription,
)

_BY_JOB = IndexModel([("job_id", ASCENDING), ("updated_at", ASCENDING)], name="by_job")


class MongoWebhookStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._callbacks = db["webhook_callbacks"]
        self._subscriptions = db["webhook_subscriptions"]
        self._secrets = db["webhook_secrets"]
        self._deliveries = db["webhook_deliveries"]

    async def ensure_indexes(self) -> None:
        with translated():
            existing = {index["name"] async for index in await self._deliveries.list_indexes()}
            if _BY_JOB.document["name"] not in existing:
                await self._deliveries.create_indexes([_BY_JOB])

    # --- callbacks ---

    async def add_callback(self, callback: Callback) -> None:
        document = {"_id": callback.job_id, **_fields(callback)}
        del document["job_id"]
        with translated():
            await self._callbacks.replace_one({"_id": callback.job_id}, document, upsert=True)

    async def callback(self, job_id: str) -> Callback | None:
        with translated():
            document = await self._callbacks.find_one({"_id": job_id})
        if document is None:
            return None
        return Callback(
            job_id=job_id,
            owner=document["owner"],
            url=document["url"],
            events=EventsWanted(document["events"]),
        )

    # --- subscriptions ---

    async def add_subscription(self, subscription: Subscription) -> None:
        document = {"_id": subscription.id, **_fields(subscription)}
        del document["id"]
        with translated():
            await self._subscriptions.insert_one(document)

    async def subscriptions(self, owner: str | None = None) -> list[Subscription]:
        query = {} if owner is None else {"owner": owner}
        with translated():
            documents = await self._subscriptions.find(query).to_list()
        found = [
            Subscription(
                id=str(d["_id"]),
                owner=d["owner"],
                url=d["url"],
                events=EventsWanted(d["events"]),
                secret=d["secret"],
                created_at=as_utc(d["created_at"]),
            )
            for d in documents
        ]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    async def remove_subscription(self, owner: str, subscription_id: str) -> bool:
        with translated():
            document = await self._subscriptions.find_one({"_id": subscription_id})
            if document is None or document["owner"] != owner:
                return False
            await self._subscriptions.delete_one({"_id": subscription_id})
        return True

    # --- secrets ---

    async def secret(self, owner: str, new: str) -> str:
        with translated():
            document = await self._secrets.find_one({"_id": owner})
            if document is not None:
                return str(document["secret"])
            try:
                await self._secrets.insert_one({"_id": owner, "secret": new})
                return new
            except DuplicateKeyError:
                document = await self._secrets.find_one({"_id": owner})
        assert document is not None
        return str(document["secret"])

    # --- deliveries ---

    async def delivery(self, delivery_id: str) -> Delivery | None:
        with translated():
            document = await self._deliveries.find_one({"_id": delivery_id})
        return None if document is None else _delivery(document)

    async def save_delivery(self, delivery: Delivery) -> None:
        document = {"_id": delivery.id, **_fields(delivery)}
        del document["id"]
        with translated():
            await self._deliveries.replace_one({"_id": delivery.id}, document, upsert=True)

    async def deliveries(self, job_id: str) -> list[Delivery]:
        with translated():
            documents = await self._deliveries.find({"job_id": job_id}).to_list()
        return sorted((_delivery(d) for d in documents), key=lambda d: (d.updated_at, d.id))

    async def forget_job(self, job_id: str) -> None:
        with translated():
            await self._callbacks.delete_one({"_id": job_id})
            await self._deliveries.delete_many({"job_id": job_id})


def _fields(value: Any) -> Document:
    return {
        name: (item.value if isinstance(item, EventsWanted | DeliveryState) else item)
        for name, item in dataclasses.asdict(value).items()
    }


def _delivery(document: Document) -> Delivery:
    next_at = document.get("next_attempt_at")
    return Delivery(
        id=str(document["_id"]),
        job_id=document["job_id"],
        owner=document["owner"],
        event_id=document["event_id"],
        event_type=document["event_type"],
        url=document["url"],
        target=document["target"],
        state=DeliveryState(document["state"]),
        attempts=tuple(
            Attempt(
                attempt=a["attempt"],
                at=as_utc(a["at"]),
                duration_ms=a["duration_ms"],
                status_code=a["status_code"],
                error=a["error"],
            )
            for a in document["attempts"]
        ),
        next_attempt_at=as_utc(next_at) if next_at is not None else None,
        updated_at=as_utc(document["updated_at"]),
    )
