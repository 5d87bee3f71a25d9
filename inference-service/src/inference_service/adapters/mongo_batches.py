"""The batch store: one document per batch, read and written by `_id` alone.

That is all FerretDB 1.24 serves from an index, and all a batch needs: it lists its jobs, so
its progress reads them by `_id` too (JobStore.statuses). The one update, recording jobs'
final statuses, sets fields that never change once set: FerretDB's non-atomic
read-modify-write may lose one such write to a concurrent one, which costs a later read its
cache, never a wrong count. So one adapter serves MongoDB and FerretDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from inference_service.adapters.documents import Document, Documents, MongoDocuments
from inference_service.domain.batch import Batch, BatchFile, FileProblem
from inference_service.domain.clock import as_utc


class MongoBatchStore:
    def __init__(self, batches: Documents) -> None:
        self.batches = batches

    @classmethod
    def on(cls, db: AsyncDatabase[Document]) -> MongoBatchStore:
        return cls(MongoDocuments(db["batches"]))

    async def get(self, batch_id: str) -> Batch | None:
        document = await self.batches.find_one(batch_id)
        return from_document(document) if document is not None else None

    async def add(self, batch: Batch) -> bool:
        return await self.batches.insert(to_document(batch))

    async def settle(self, batch_id: str, statuses: Mapping[str, str]) -> None:
        fields = {f"settled.{job_id}": status for job_id, status in statuses.items()}
        await self.batches.update({"_id": batch_id}, {"$set": fields})

    async def delete(self, batch_id: str) -> None:
        await self.batches.delete({"_id": batch_id})


def to_document(batch: Batch) -> Document:
    return {
        "_id": batch.id,
        "owner": batch.owner,
        "model": batch.model,
        "options": batch.options,
        "created_at": batch.created_at,
        "fingerprint": batch.fingerprint,
        "idempotency_key": batch.idempotency_key,
        "files": [_file_document(file) for file in batch.files],
        "settled": dict(batch.settled),
    }


def _file_document(file: BatchFile) -> Document:
    document: Document = {"index": file.index, "name": file.name, "job_id": file.job_id}
    if file.problem is not None:
        problem = file.problem
        document["problem"] = {
            "status": problem.status,
            "slug": problem.slug,
            "detail": problem.detail,
        }
    return document


def from_document(document: Mapping[str, Any]) -> Batch:
    return Batch(
        id=str(document["_id"]),
        owner=document["owner"],
        model=document["model"],
        options=dict(document.get("options") or {}),
        created_at=as_utc(document["created_at"]),
        fingerprint=document["fingerprint"],
        idempotency_key=document.get("idempotency_key"),
        files=tuple(
            BatchFile(
                index=file["index"],
                name=file["name"],
                job_id=file.get("job_id"),
                problem=FileProblem(**file["problem"]) if file.get("problem") else None,
            )
            for file in document["files"]
        ),
        settled=dict(document.get("settled") or {}),
    )
