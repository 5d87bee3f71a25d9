"""One collection, as the job store uses it: the few operations it needs, errors translated.

Every operation here runs on MongoDB and on FerretDB 1.x: single-document atomic updates only
(no transactions, no change streams), plain unique indexes, no projection on findAndModify.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from inference_service.ports import StoreError, StoreUnavailable

Document = dict[str, Any]


class Documents(Protocol):
    async def find_one(
        self, doc_id: str, projection: Mapping[str, int] | None = None
    ) -> Document | None: ...

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, int] | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int = 0,
    ) -> list[Document]: ...

    async def insert(self, document: Document) -> bool:
        """False when a document with its `_id` exists."""
        ...

    async def update(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> Document | None:
        """The document after the update, or None when the query matched nothing."""
        ...

    async def delete(self, query: Mapping[str, Any]) -> Document | None: ...


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """pymongo's errors as the ports' (the service layer knows no pymongo)."""
    try:
        yield
    except ConnectionFailure as exc:
        raise StoreUnavailable(str(exc)) from exc
    except PyMongoError as exc:
        raise StoreError(str(exc)) from exc


class MongoDocuments:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def find_one(
        self, doc_id: str, projection: Mapping[str, int] | None = None
    ) -> Document | None:
        with translated():
            return await self.collection.find_one({"_id": doc_id}, projection)

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, int] | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int = 0,
    ) -> list[Document]:
        with translated():
            cursor = self.collection.find(dict(query), projection)
            if sort:
                cursor = cursor.sort(list(sort))
            return [document async for document in cursor.limit(limit)]

    async def insert(self, document: Document) -> bool:
        with translated():
            try:
                await self.collection.insert_one(document)
            except DuplicateKeyError:
                return False
        return True

    async def update(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> Document | None:
        with translated():
            return await self.collection.find_one_and_update(
                dict(query), dict(update), return_document=ReturnDocument.AFTER
            )

    async def delete(self, query: Mapping[str, Any]) -> Document | None:
        with translated():
            return await self.collection.find_one_and_delete(dict(query))
