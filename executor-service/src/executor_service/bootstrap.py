"""Wiring: real Kafka, MongoDB and LiteRT adapters into one runnable executor."""

from __future__ import annotations

import logging
import os
import socket
import time
from functools import partial

from PIL import Image

from executor_service.consumer import ExecutorService, kafka_clients, kafka_reachable
from executor_service.execution import ExecutionContext
from executor_service.health import HealthServer
from executor_service.images import StoredImages
from executor_service.lag import ConsumerLag
from executor_service.metrics import Metrics
from executor_service.models import ModelRegistry
from executor_service.pipeline import Limits
from executor_service.prefetch import ImagePrefetcher
from executor_service.settings import ExecutorSettings
from executor_service.worker import WorkerPool
from inference_common.assets import AssetStore
from inference_common.contracts import EventSchemas
from inference_common.image_stores import open_image_store
from inference_common.kafka import ensure_topics
from inference_common.mongo import sync_client
from inference_common.replica import ReplicaSlot

log = logging.getLogger(__name__)
_READY_CACHE_S = 2.0


def executor_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Executor:
    """Models, the poll loop and the HTTP endpoints of one executor process."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.executor = executor_id()
        store = AssetStore.from_settings(settings)
        threads = settings.executor_interpreter_threads
        self.pool = WorkerPool(
            settings.executor_workers, partial(ModelRegistry.load, store, threads)
        )
        self._mongo = sync_client(settings)
        self.replica = ReplicaSlot.claim(settings, settings.executor_group_id)
        consumer, self.producer = kafka_clients(
            settings, self.executor, self.replica, ConsumerLag(self.metrics.consumer_lag)
        )
        # Reads by each claim check's scheme; shares this process's MongoDB client.
        self._image_stores = open_image_store(settings, mongo=self._mongo)
        images = StoredImages(self._image_stores, settings.executor_image_read_attempts)
        context = ExecutionContext(
            executor=self.executor,
            images=images,
            limits=Limits(
                max_image_bytes=settings.executor_max_image_bytes,
                max_image_pixels=settings.executor_max_image_pixels,
                jpeg_draft=settings.executor_jpeg_draft,
            ),
            metrics=self.metrics,
            schemas=EventSchemas.from_dir(settings.openapi_dir),
        )
        prefetcher = ImagePrefetcher(images, settings.io_threads)
        self.service = ExecutorService(
            settings, consumer, self.producer, self.pool, context, prefetcher=prefetcher
        )
        self.health = HealthServer(
            settings.executor_http_host,
            settings.executor_http_port,
            self.metrics.registry,
            alive=self._alive,
            ready=self._ready,
        )
        self._kafka_checked = (0.0, False)

    def run(self) -> int:
        """Until stop(); the exit code."""
        # Pillow warns above this and refuses at twice it; the executor refuses at it.
        Image.MAX_IMAGE_PIXELS = self.settings.executor_max_image_pixels
        self.health.start()
        log.info("executor starting", extra={"executor": self.executor, "port": self.health.port})
        try:
            ensure_topics(self.settings)
            self.pool.start()
            if not self.pool.wait_ready():
                log.error("the models did not load", extra={"error": repr(self.pool.error)})
                return 1
            log.info("models loaded", extra={"workers": self.settings.executor_workers})
            return self.service.run()
        finally:
            self.health.stop()
            self._image_stores.close()
            self._mongo.close()
            self.replica.close()

    def stop(self) -> None:
        self.service.stop()

    def _alive(self) -> tuple[bool, dict[str, object]]:
        # The loop beats every round; a silence longer than max.poll.interval means it is stuck.
        silent_s = time.monotonic() - self.service.heartbeat
        limit_s = self.settings.executor_max_poll_interval_ms / 1000
        return silent_s < limit_s, {"loop_silent_s": round(silent_s, 3)}

    def _ready(self) -> tuple[bool, dict[str, object]]:
        checked_at, reachable = self._kafka_checked
        if time.monotonic() - checked_at > _READY_CACHE_S:
            reachable = kafka_reachable(self.producer, self.settings.topic_jobs)
            self._kafka_checked = (time.monotonic(), reachable)
        models = self.pool.ready
        return models and reachable and self.service.fatal is None, {
            "models_loaded": models,
            "kafka_reachable": reachable,
        }
