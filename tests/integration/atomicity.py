"""The atomicity probe: does a MongoDB-API server apply each single-document update atomically?

Two measurements on one document, each with every operation released at once from its own
thread and connection:

- `increments` concurrent `$inc` by 1: an atomic server ends at exactly `increments`; one that
  reads, modifies and writes back without a lock loses some (each was acknowledged).
- `contenders` concurrent compare-and-set `update_one({_id, status: NEW}, {$set: {status:
  QUEUED}})`: on an atomic server exactly one matches and modifies; more winners mean the
  filter was checked against a state another update was already replacing.

The job service's writes are compare-and-set updates like the second one, so this is what
decides whether several replicas may share a database (docs/scaling.md).

    uv run python -m tests.integration.atomicity [URI ...] [--rounds N]

Without URIs it probes the local stack's FerretDB and its atomic test server (`make atomicity`
starts both).
"""

from __future__ import annotations

import argparse
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection

from tests.conftest import load_localstack

Document = dict[str, Any]

INCREMENTS = 200
CONTENDERS = 50


@dataclass(frozen=True)
class ProbeResult:
    server: str
    increments: int
    final_count: int
    contenders: int
    winners: int

    @property
    def atomic(self) -> bool:
        return self.final_count == self.increments and self.winners == 1

    def summary(self) -> str:
        lost = self.increments - self.final_count
        return (
            f"{self.server}: {self.increments} concurrent $inc end at {self.final_count} "
            f"({lost} lost); {self.contenders} concurrent compare-and-set, "
            f"{self.winners} winner(s)"
        )


def server_name(client: MongoClient[Document]) -> str:
    info = client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        return f"FerretDB {info['ferretdbVersion']}"
    # mongod, or the stack's atomic test server, which names its JVM.
    process = client.admin.command("serverStatus").get("process")
    name = "mongo-java-server" if process == "java" else process
    return f"{name} (MongoDB {info['version']} API)"


def probe(uri: str, increments: int = INCREMENTS, contenders: int = CONTENDERS) -> ProbeResult:
    """Both measurements, in a database of their own that is dropped afterwards."""
    # One connection per thread, so that the operations really reach the server together.
    client: MongoClient[Document] = MongoClient(
        uri, maxPoolSize=max(increments, contenders), serverSelectionTimeoutMS=5000
    )
    database = f"atomicity_probe_{uuid.uuid4().hex[:10]}"
    try:
        collection = client[database]["probe"]
        collection.insert_one({"_id": "counter", "n": 0})
        increment = {"$inc": {"n": 1}}
        _all_at_once(increments, lambda: collection.update_one({"_id": "counter"}, increment))
        counter = collection.find_one({"_id": "counter"})
        assert counter is not None
        return ProbeResult(
            server=server_name(client),
            increments=increments,
            final_count=int(counter["n"]),
            contenders=contenders,
            winners=_compare_and_set(collection, contenders),
        )
    finally:
        client.drop_database(database)
        client.close()


def _compare_and_set(collection: Collection[Document], contenders: int) -> int:
    collection.insert_one({"_id": "job", "status": "NEW"})
    queue = {"$set": {"status": "QUEUED"}}
    results = _all_at_once(
        contenders, lambda: collection.update_one({"_id": "job", "status": "NEW"}, queue)
    )
    return sum(result.modified_count for result in results)


def _all_at_once(count: int, operation: Callable[[], Any]) -> list[Any]:
    """Runs `operation` on `count` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run() -> Any:
        barrier.wait(timeout=60)
        return operation()

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(run) for _ in range(count)]
        return [future.result(timeout=120) for future in futures]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.atomicity")
    parser.add_argument("uris", nargs="*", help="default: the local stack's two servers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = load_localstack().Config.from_env()
    for uri in args.uris or [cfg.mongodb_uri, cfg.atomic_mongodb_uri]:
        for _ in range(args.rounds):
            result = probe(uri)
            verdict = "atomic" if result.atomic else "NOT atomic"
            print(f"{uri} {result.summary()}: {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
