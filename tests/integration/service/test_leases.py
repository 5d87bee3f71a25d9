"""The relay lease: one holder at a time, taken over once it expires."""

from __future__ import annotations

import asyncio

import pytest

from inference_common.mongo import async_client
from inference_common.settings import CommonSettings
from inference_service.adapters.mongo_leases import MongoLeaseStore

pytestmark = pytest.mark.integration


def test_one_holder_until_expiry(settings: CommonSettings) -> None:
    async def scenario() -> None:
        client = async_client(settings)
        try:
            leases = MongoLeaseStore(client[settings.mongodb_database])
            assert await leases.acquire("relay", "a", 0.5)
            assert not await leases.acquire("relay", "b", 0.5)
            assert await leases.acquire("relay", "a", 0.5)  # renewal
            await asyncio.sleep(0.7)
            assert await leases.acquire("relay", "b", 5)  # a lapsed lease is taken over
            assert not await leases.acquire("relay", "a", 5)
            await leases.release("relay", "a")  # not the holder: no effect
            assert not await leases.acquire("relay", "a", 5)
            await leases.release("relay", "b")
            assert await leases.acquire("relay", "a", 5)
        finally:
            await client.close()

    asyncio.run(scenario())
