"""The composition root: the adapters, the use cases and the loops, wired and run.

The one module that picks implementations: MongoDB or FerretDB, Kafka, the image store.
Unit tests wire the same use cases to fakes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inference_common.contracts import EventSchemas
from inference_common.kafka import (
    client_config,
    consumer_config,
    ensure_topics,
    producer_config,
    static_member,
)
from inference_common.replica import ReplicaSlot
from inference_service.adapters.kafka import (
    KafkaAdmin,
    KafkaDeadLetters,
    KafkaGroupConsumer,
    KafkaPublisher,
    KafkaTail,
)
from inference_service.adapters.mongo import MongoConnection
from inference_service.adapters.webhook_http import SafeWebhookSender, tls_context
from inference_service.api.problems import file_problem
from inference_service.domain.catalog import ModelCatalog
from inference_service.domain.events import Channel
from inference_service.domain.job import RetentionPolicy, RetryPolicy
from inference_service.domain.webhook_urls import TargetPolicy
from inference_service.domain.webhooks import Backoff
from inference_service.metrics import ServiceMetrics
from inference_service.service_layer.batches import BatchService
from inference_service.service_layer.folding import ResultFolding
from inference_service.service_layer.jobs import JobService, Limits
from inference_service.service_layer.live import LiveEvents
from inference_service.service_layer.relaying import OutboxRelaying
from inference_service.service_layer.retention import RetentionSweeping
from inference_service.service_layer.settled import SettledJobs
from inference_service.service_layer.sweeping import DeadlineSweeping
from inference_service.service_layer.waiting import Classifier, WaitPolicy
from inference_service.service_layer.webhooks import WebhookDispatching, Webhooks
from inference_service.service_layer.writer import JobWriter, OutboxWrites
from inference_service.settings import ServiceSettings
from inference_service.workers.loops import (
    FolderLoop,
    LiveLoop,
    RelayLoop,
    SweeperLoop,
    WebhookLoop,
)

log = logging.getLogger(__name__)


class NotStarted(RuntimeError):
    pass


@dataclass(frozen=True)
class Started:
    """What start() opens and the API reads; stop() closes it and drops it as a whole."""

    service: JobService
    batches: BatchService
    classifier: Classifier
    webhooks: Webhooks
    mongo: MongoConnection
    admin: KafkaAdmin
    replica: ReplicaSlot


class Runtime:
    """Starts and stops everything the process runs; the API reads its services from here."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._catalog = ModelCatalog.load(settings.assets_manifest, settings.assets_cache_dir)
        self.schemas = EventSchemas.from_dir(settings.openapi_dir)
        self.policy = RetryPolicy(settings.max_attempts, settings.execution_deadline_seconds)
        self.retention = RetentionPolicy(
            settings.image_retention_seconds, settings.result_retention_seconds
        )
        self.outbox_writes = OutboxWrites()
        self.settled = SettledJobs()
        self.metrics = ServiceMetrics()
        self.metrics.outbox_waiting.set_function(lambda: len(self.outbox_writes))
        self.metrics.sse_streams.set_function(
            lambda: self._live.subscribers if self._live is not None else 0
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started: Started | None = None
        self._kafka_checked: tuple[float, bool] = (0.0, False)
        self.relay: RelayLoop | None = None
        self.folding: ResultFolding | None = None
        self.sweeping: DeadlineSweeping | None = None
        self.purging: RetentionSweeping | None = None
        self._live: LiveEvents | None = None

    # --- what the API reads ---

    @property
    def catalog(self) -> ModelCatalog:
        return self._catalog

    @property
    def started(self) -> Started:
        if self._started is None:
            raise NotStarted("the service has not started")
        return self._started

    @property
    def service(self) -> JobService:
        return self.started.service

    @property
    def batches(self) -> BatchService:
        return self.started.batches

    @property
    def classifier(self) -> Classifier:
        return self.started.classifier

    @property
    def webhooks(self) -> Webhooks:
        return self.started.webhooks

    @property
    def live(self) -> LiveEvents | None:
        return self._live

    # --- lifecycle ---

    async def start(self) -> None:
        settings = self.settings
        self._stop.clear()
        # Named like its previous life: the folder's partitions and the relay's lease come back
        # at once after a crash, instead of after a session timeout or the lease's expiry.
        replica = ReplicaSlot.claim(settings, settings.folder_group_id)
        mongo = MongoConnection(settings, settings.mongodb_database)
        store = await mongo.job_store()
        images = mongo.image_store()
        webhook_store = await mongo.webhook_store()
        targets = TargetPolicy(settings.webhook_allow_http, settings.webhook_allow_loopback)
        writer = JobWriter(
            store, outbox=self.outbox_writes, settled=self.settled, metrics=self.metrics
        )
        service = JobService(
            writer,
            images,
            self._catalog,
            Limits(settings.max_image_bytes, settings.max_image_pixels),
            self.policy,
            replica=replica.name,
            webhooks=webhook_store,
        )
        self._started = Started(
            service,
            BatchService(mongo.batch_store(), service, file_problem),
            Classifier(
                service,
                self.settled,
                WaitPolicy(
                    settings.classify_timeout_seconds, settings.classify_poll_interval_seconds
                ),
            ),
            Webhooks(webhook_store, service, targets),
            mongo,
            KafkaAdmin(client_config(settings)),
            replica,
        )
        self._spawn("topics", self._ensure_topics)
        if settings.run_relay:
            relaying = OutboxRelaying(
                store,
                images,
                KafkaPublisher(
                    producer_config(
                        settings,
                        **{
                            "linger.ms": settings.relay_linger_ms,
                            "message.timeout.ms": settings.relay_delivery_timeout_ms,
                        },
                    ),
                    {Channel.JOBS: settings.topic_jobs, Channel.RESULTS: settings.topic_results},
                    settings.relay_delivery_timeout_ms / 1000,
                ),
                self.outbox_writes,
                self.metrics,
                batch_size=settings.relay_batch_size,
                scan_interval=settings.relay_poll_interval_seconds,
            )
            relay = self.relay = RelayLoop(
                relaying,
                mongo.lease_store(),
                poll_interval=settings.relay_poll_interval_seconds,
                lease_seconds=settings.relay_lease_seconds,
                holder=replica.name,
            )
            self._spawn("outbox-relay", lambda: relay.run(self._stop))
        if settings.run_folder:
            folding = self.folding = ResultFolding(
                writer,
                self.schemas,
                self.policy,
                KafkaDeadLetters(
                    producer_config(settings, **{"message.timeout.ms": 30_000}),
                    settings.topic_dead_letter,
                ),
                self.metrics,
                images=images,
                retention=self.retention if settings.run_purger else None,
            )
            folder = FolderLoop(
                folding,
                KafkaGroupConsumer(
                    consumer_config(
                        settings,
                        settings.folder_group_id,
                        **static_member(settings, replica, settings.topic_results),
                    ),
                    settings.topic_results,
                ),
                batch_size=settings.folder_batch_size,
                linger=settings.folder_linger_ms / 1000,
            )
            self._spawn("result-folder", lambda: folder.run(self._stop))
        if settings.run_sweeper:
            sweeping = self.sweeping = DeadlineSweeping(writer, self.policy, self.metrics)
            sweeper = SweeperLoop(sweeping, settings.sweep_interval_seconds)
            self._spawn("deadline-sweeper", lambda: sweeper.run(self._stop))
        if settings.run_purger:
            purging = self.purging = RetentionSweeping(
                writer, images, self.retention, self.metrics, settings.purge_batch_size
            )
            purger = SweeperLoop(purging, settings.purge_interval_seconds, "retention sweep")
            self._spawn("retention-sweeper", lambda: purger.run(self._stop))
        if settings.run_webhooks:
            dispatching = WebhookDispatching(
                webhook_store,
                store,
                SafeWebhookSender(
                    targets,
                    connect_timeout=settings.webhook_connect_timeout_seconds,
                    read_timeout=settings.webhook_read_timeout_seconds,
                    max_response_bytes=settings.webhook_max_response_bytes,
                    tls=tls_context(settings.webhook_ca_file),
                ),
                KafkaDeadLetters(
                    producer_config(settings, **{"message.timeout.ms": 30_000}),
                    settings.topic_dead_letter,
                ),
                Backoff(
                    settings.webhook_backoff_seconds,
                    settings.webhook_backoff_max_seconds,
                    settings.webhook_max_attempts,
                ),
                max_job_attempts=settings.max_attempts,
            )
            webhook_loop = WebhookLoop(
                dispatching,
                KafkaGroupConsumer(
                    consumer_config(
                        settings,
                        settings.webhook_group_id,
                        **static_member(
                            settings, replica, f"{settings.topic_jobs}.{settings.topic_results}"
                        ),
                    ),
                    settings.topic_jobs,
                    settings.topic_results,
                ),
                max_in_flight=settings.webhook_concurrency,
            )
            self._spawn("webhook-dispatcher", lambda: webhook_loop.run(self._stop))
        if settings.run_live:
            live = self._live = LiveEvents(
                service.owner_of, settings.max_attempts, queue_size=settings.sse_queue_size
            )
            tail = KafkaTail(
                consumer_config(
                    settings,
                    f"inference-service-live-{uuid.uuid4().hex}",
                    **{"auto.offset.reset": "latest", "isolation.level": "read_uncommitted"},
                ),
                [settings.topic_jobs, settings.topic_results],
            )
            live_loop = LiveLoop(live, tail, tail.start)
            self._spawn("live-events", lambda: live_loop.run(self._stop))

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
        started, self._started = self._started, None
        if started is not None:
            await started.mongo.close()
            started.replica.close()

    def end_streams(self) -> None:
        """On SIGTERM: let open event streams finish so the server can drain quickly."""
        if self._live is not None:
            self._live.close_all()

    # --- readiness ---

    async def ready(self) -> dict[str, bool]:
        started = self._started
        if started is None:
            return {"mongodb": False, "kafka": False}
        return {"mongodb": await started.mongo.ping(), "kafka": await self._kafka_ok(started.admin)}

    async def _kafka_ok(self, admin: KafkaAdmin) -> bool:
        checked_at, ok = self._kafka_checked
        if time.monotonic() - checked_at < 2.0:
            return ok
        ok = await admin.reachable()
        self._kafka_checked = (time.monotonic(), ok)
        return ok

    # --- wiring ---

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
