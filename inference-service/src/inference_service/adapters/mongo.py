"""The MongoDB connection: which job store fits the server, the image stores, readiness, and
closing."""

from __future__ import annotations

import logging

from inference_common.image_stores import ImageStores, open_image_store
from inference_common.mongo import async_client, sync_client
from inference_common.settings import CommonSettings
from inference_service.adapters.ferretdb_jobs import FerretDbJobStore, is_ferretdb
from inference_service.adapters.mongo_batches import MongoBatchStore
from inference_service.adapters.mongo_jobs import MongoJobStore
from inference_service.adapters.mongo_leases import MongoLeaseStore
from inference_service.adapters.mongo_webhooks import MongoWebhookStore
from inference_service.ports import BatchStore, JobStore, LeaseStore, WebhookStore

log = logging.getLogger(__name__)


class MongoConnection:
    def __init__(self, settings: CommonSettings, database: str) -> None:
        self._settings = settings
        self._client = async_client(settings)
        # The image stores' port is synchronous (executors call it on threads); the MongoDB
        # image store, when configured, shares this client.
        self._sync_client = sync_client(settings)
        self._db = self._client[database]

    async def job_store(self) -> JobStore:
        await MongoJobStore.ensure_indexes(self._db)
        if await is_ferretdb(self._db):
            log.info("FerretDB: job writes are checked in this process; run one replica")
            return FerretDbJobStore.on(self._db)
        return MongoJobStore.on(self._db)

    def batch_store(self) -> BatchStore:
        return MongoBatchStore.on(self._db)

    async def webhook_store(self) -> WebhookStore:
        store = MongoWebhookStore(self._db)
        await store.ensure_indexes()
        return store

    def lease_store(self) -> LeaseStore:
        return MongoLeaseStore(self._db)

    def image_store(self) -> ImageStores:
        """IMAGE_STORE's store for new images; reads and deletes by each URI's scheme."""
        return open_image_store(self._settings, self._sync_client)

    async def ping(self) -> bool:
        try:
            await self._client.admin.command("ping")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self._client.close()
        self._sync_client.close()
