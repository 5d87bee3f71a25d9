"""The composition root: clients, adapters, the service and the background workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka.admin import AdminClient
from pymongo import AsyncMongoClient

from inference_common.contracts import EventSchemas
from inference_common.kafka import (
    client_config,
    consumer_config,
    ensure_topics,
    producer_config,
    static_member,
)
from inference_common.mongo import async_client
from inference_common.replica import ReplicaSlot
from inference_service.classifier import Classifier, WaitPolicy
from inference_service.domain.catalog import ModelCatalog
from inference_service.domain.events import Channel
from inference_service.metrics import ServiceMetrics
from inference_service.service import JobService, Limits
from inference_service.settings import ServiceSettings
from inference_service.storage.images import ImageStore
from inference_service.storage.jobs import JobRepository, is_ferretdb
from inference_service.storage.leases import LeaseStore
from inference_service.workers.executions import ExecutionScheduler, RetryPolicy
from inference_service.workers.folder import FolderConfig, ResultFolder
from inference_service.workers.live import LiveEvents
from inference_service.workers.relay import OutboxRelay, OutboxWrites, RelayConfig
from inference_service.workers.settled import SettledJobs
from inference_service.workers.sweeper import DeadlineSweeper

log = logging.getLogger(__name__)


class NotStarted(RuntimeError):
    pass


class Runtime:
    """Starts and stops everything the process runs; the API reads its services from here."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._catalog = ModelCatalog.load(settings.assets_manifest, settings.assets_cache_dir)
        self.schemas = EventSchemas(settings.openapi_dir / "asyncapi.yaml")
        self.outbox_writes = OutboxWrites()
        self.settled = SettledJobs()
        self.metrics = ServiceMetrics()
        self.metrics.outbox_waiting.set_function(lambda: len(self.outbox_writes))
        self.metrics.sse_streams.set_function(
            lambda: self._live.subscribers if self._live is not None else 0
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._mongo: AsyncMongoClient[dict[str, Any]] | None = None
        self._service: JobService | None = None
        self._classifier: Classifier | None = None
        self._admin: AdminClient | None = None
        self._kafka_checked: tuple[float, bool] = (0.0, False)
        self.jobs: JobRepository | None = None
        self.relay: OutboxRelay | None = None
        self.folder: ResultFolder | None = None
        self.sweeper: DeadlineSweeper | None = None
        self._live: LiveEvents | None = None
        self._replica: ReplicaSlot | None = None

    # --- what the API reads ---

    @property
    def catalog(self) -> ModelCatalog:
        return self._catalog

    @property
    def service(self) -> JobService:
        if self._service is None:
            raise NotStarted("the service has not started")
        return self._service

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            raise NotStarted("the service has not started")
        return self._classifier

    @property
    def live(self) -> LiveEvents | None:
        return self._live

    # --- lifecycle ---

    async def start(self) -> None:
        settings = self.settings
        self._stop.clear()
        # Named like its previous life: the folder's partitions and the relay's lease come back
        # at once after a crash, instead of after a session timeout or the lease's expiry.
        replica = self._replica = ReplicaSlot.claim(settings, settings.folder_group_id)
        self._mongo = async_client(settings)
        db = self._mongo[settings.mongodb_database]
        ferretdb = await is_ferretdb(db)
        if ferretdb:
            log.info("FerretDB: job writes are checked in this process; run one replica")
        jobs = self.jobs = JobRepository(
            db, self.outbox_writes, check_in_process=ferretdb, metrics=self.metrics
        )
        images = ImageStore(db)
        await jobs.ensure_indexes()
        self._service = JobService(
            jobs,
            images,
            self._catalog,
            Limits(
                max_image_bytes=settings.max_image_bytes,
                max_image_pixels=settings.max_image_pixels,
                execution_deadline_seconds=settings.execution_deadline_seconds,
            ),
            replica=replica.name,
        )
        self._classifier = Classifier(
            self._service,
            self.settled,
            WaitPolicy(settings.classify_timeout_seconds, settings.classify_poll_interval_seconds),
        )
        self._admin = AdminClient(client_config(settings))
        scheduler = ExecutionScheduler(
            jobs, RetryPolicy(settings.max_attempts, settings.execution_deadline_seconds)
        )
        self._spawn("topics", self._ensure_topics)
        if settings.run_relay:
            self.relay = OutboxRelay(
                jobs,
                images,
                LeaseStore(db),
                self._relay_config(),
                self.outbox_writes,
                metrics=self.metrics,
                holder=replica.name,
            )
            relay = self.relay
            self._spawn("outbox-relay", lambda: relay.run(self._stop))
        if settings.run_folder:
            self.folder = ResultFolder(
                jobs,
                scheduler,
                self.schemas,
                self._folder_config(replica),
                on_applied=self.settled.notify,
                metrics=self.metrics,
            )
            folder = self.folder
            self._spawn("result-folder", lambda: folder.run(self._stop))
        if settings.run_sweeper:
            self.sweeper = DeadlineSweeper(
                jobs, scheduler, settings.sweep_interval_seconds, metrics=self.metrics
            )
            sweeper = self.sweeper
            self._spawn("deadline-sweeper", lambda: sweeper.run(self._stop))
        if settings.run_live:
            self._live = LiveEvents(
                consumer_config(
                    settings,
                    f"inference-service-live-{uuid.uuid4().hex}",
                    **{"auto.offset.reset": "latest", "isolation.level": "read_uncommitted"},
                ),
                [settings.topic_jobs, settings.topic_results],
                self._owner_of,
                settings.max_attempts,
                queue_size=settings.sse_queue_size,
            )
            live = self._live
            self._spawn("live-events", lambda: live.run(self._stop))

    async def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.close_all()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        if self._mongo is not None:
            await self._mongo.close()
            self._mongo = None
        if self._replica is not None:
            self._replica.close()
            self._replica = None
        self._service = None
        self._classifier = None
        self._admin = None

    def end_streams(self) -> None:
        """On SIGTERM: let open event streams finish so the server can drain quickly."""
        if self._live is not None:
            self._live.close_all()

    # --- readiness ---

    async def ready(self) -> dict[str, bool]:
        return {"mongodb": await self._mongo_ok(), "kafka": await self._kafka_ok()}

    async def _mongo_ok(self) -> bool:
        if self._mongo is None:
            return False
        try:
            await self._mongo.admin.command("ping")
        except Exception:
            return False
        return True

    async def _kafka_ok(self) -> bool:
        checked_at, ok = self._kafka_checked
        if time.monotonic() - checked_at < 2.0 or self._admin is None:
            return ok and self._admin is not None
        admin = self._admin
        try:
            await asyncio.to_thread(admin.list_topics, timeout=2.0)
            ok = True
        except Exception:
            ok = False
        self._kafka_checked = (time.monotonic(), ok)
        return ok

    # --- wiring ---

    def _relay_config(self) -> RelayConfig:
        settings = self.settings
        return RelayConfig(
            topics={Channel.JOBS: settings.topic_jobs, Channel.RESULTS: settings.topic_results},
            producer=producer_config(
                settings,
                **{
                    "linger.ms": settings.relay_linger_ms,
                    "message.timeout.ms": settings.relay_delivery_timeout_ms,
                },
            ),
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval_seconds,
            lease_seconds=settings.relay_lease_seconds,
            delivery_timeout=settings.relay_delivery_timeout_ms / 1000,
        )

    def _folder_config(self, replica: ReplicaSlot) -> FolderConfig:
        settings = self.settings
        return FolderConfig(
            topic=settings.topic_results,
            dead_letter_topic=settings.topic_dead_letter,
            consumer=consumer_config(
                settings, settings.folder_group_id, **static_member(settings, replica)
            ),
            producer=producer_config(settings, **{"message.timeout.ms": 30_000}),
            batch_size=settings.folder_batch_size,
        )

    async def _owner_of(self, job_id: str) -> str | None:
        if self.jobs is None:
            return None
        job = await self.jobs.collection.find_one({"_id": job_id}, {"owner": 1})
        return str(job["owner"]) if job else None

    async def _ensure_topics(self) -> None:
        """Best effort and in the background: the API takes work while Kafka is away."""
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(ensure_topics, self.settings, 10.0)
                return
            except Exception as exc:
                log.warning("cannot ensure Kafka topics yet: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5.0)

    def _spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            # A worker that dies is restarted: a bug in one loop must not silently stop it.
            while not self._stop.is_set():
                try:
                    await work()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s crashed; restarting in 1 s", name)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 1.0)

        self._tasks.append(asyncio.create_task(guarded(), name=name))
