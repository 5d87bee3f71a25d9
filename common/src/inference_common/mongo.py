"""MongoDB clients: the same URI works for FerretDB (the local stack) and a real MongoDB."""

from typing import Any

from pymongo import AsyncMongoClient, MongoClient

from inference_common.settings import CommonSettings

Document = dict[str, Any]
# Both answer quickly on loopback; fail in seconds instead of pymongo's default 30 s.
_TIMEOUT_MS = 5000


def _connection(settings: CommonSettings) -> dict[str, Any]:
    """What both clients connect with."""
    return {
        "host": settings.mongodb_uri.get_secret_value(),
        "tz_aware": True,
        "serverSelectionTimeoutMS": _TIMEOUT_MS,
        "connectTimeoutMS": _TIMEOUT_MS,
    }


def sync_client(settings: CommonSettings) -> MongoClient[Document]:
    return MongoClient(**_connection(settings))


def async_client(settings: CommonSettings) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(**_connection(settings))
