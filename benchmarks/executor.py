"""Benchmark: the bare interpreter loop (ceiling) against the executor from Kafka to result.

    uv run python -m benchmarks.executor [--models NAME ...] [--seconds 8]

Per model, in one run and with the same worker count and interpreter threads:
1. ceiling: each worker thread invokes its own interpreter in a loop (input already set);
2. in-process: each worker thread runs prepare + invoke + decode on image bytes in memory;
3. executor: `python -m executor_service` in its own process drains a backlog of
   execution_requested events (images stored by reference) and publishes started + completed.
Throughput for 3 is taken from the events themselves: first started_at to last completed_at.
Needs the local stack (Kafka, FerretDB) and the asset cache; uses its own topics and database.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from bson import ObjectId
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks.processes import cpu_seconds, free_port, listening_pids, port_of
from executor_service import decoding
from executor_service.models import LoadedModel, load_model
from executor_service.preprocessing import prepare
from executor_service.settings import ExecutorSettings
from inference_common.assets import AssetStore
from inference_common.events import EventType, new_event, to_record
from inference_common.image_refs import IMAGE_COLLECTION, image_document, image_uri
from inference_common.kafka import consumer_config, decode, ensure_topics, producer_config
from inference_common.mnist import MNIST_IMAGES, read_digits
from inference_common.mongo import sync_client

IMAGE_FOR = {
    "mobilenet-v2-imagenet-quant": "images/cat_720p.jpg",
    "ssd-mobilenet-v1-coco-quant": "images/cat_720p.jpg",
}
# Stored copies of the image per model, used round robin: reads by _id cost the same however
# many images are stored, so a pool this size measures what a busy store serves.
DISTINCT_FILES = 50
MAX_JOBS = 3000


@dataclass(frozen=True)
class Figures:
    model: str
    image: str
    ceiling: float  # invokes/s
    in_process: float  # jobs/s
    executor: float  # jobs/s
    jobs: int
    cpu_ms: dict[str, float]  # CPU time per job, by process, during the executor's run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor-bench", description=__doc__)
    parser.add_argument("--models", nargs="*", help="default: every model of the manifest")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    args = parser.parse_args(argv)
    settings = ExecutorSettings(topic_partitions=max(3, ExecutorSettings().executor_workers))
    store = AssetStore.from_settings(settings)
    names = args.models or [spec.name for spec in store.manifest.model]
    workers, threads = settings.executor_workers, settings.executor_interpreter_threads
    print(_machine(workers, threads, settings), flush=True)
    figures = []
    for name in names:
        figures.append(_bench_model(name, store, settings, args.seconds))
        _print(figures[-1])
    print(_table(figures))
    return 0


def _machine(workers: int, threads: int, settings: ExecutorSettings) -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
        f"workers={workers}, interpreter threads={threads}, batch={settings.executor_batch_size}, "
        f"max in flight={settings.max_in_flight}, jpeg draft={settings.executor_jpeg_draft}"
    )


def _bench_model(
    name: str, store: AssetStore, settings: ExecutorSettings, seconds: float
) -> Figures:
    image_name, data = image_for(name, store)
    ceiling, in_process = model_rates(name, store, settings, data, seconds)
    jobs = min(MAX_JOBS, max(200, int(in_process * seconds)))
    database = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        run_settings = settings.model_copy(update={"mongodb_database": database})
        executor, cpu_ms = _executor_rate(
            run_settings, name, store.manifest.model_spec(name).task, data, jobs
        )
    finally:
        client = sync_client(settings)
        client.drop_database(database)
        client.close()
    return Figures(name, image_name, ceiling, in_process, executor, jobs, cpu_ms)


def model_rates(
    name: str, store: AssetStore, settings: ExecutorSettings, data: bytes, seconds: float
) -> tuple[float, float]:
    """The ceiling (bare invokes/s) and the in-process rate (jobs/s on `data`), each with one
    thread per executor worker at the executor's interpreter threads."""
    spec = store.manifest.model_spec(name)
    workers, threads = settings.executor_workers, settings.executor_interpreter_threads
    models = [load_model(spec, store, threads) for _ in range(workers)]
    ceiling = _rate(models, _invoke_loop(store, threads), data, seconds)
    in_process = _rate(models, _pipeline_loop(settings), data, seconds)
    return ceiling, in_process


def image_for(name: str, store: AssetStore) -> tuple[str, bytes]:
    if name in IMAGE_FOR:
        path = IMAGE_FOR[name]
        return Path(path).name, store.path_of(path).read_bytes()
    # The MNIST models: the first t10k digit as a PNG, as a client would upload it.
    first = read_digits(store.path_of(MNIST_IMAGES), None, 1)[0]
    return "mnist t10k #0 (PNG)", first.png()


Loop = Callable[[LoadedModel, bytes, threading.Event], int]


def _rate(models: list[LoadedModel], loop: Loop, data: bytes, seconds: float) -> float:
    """Per second, summed over one thread per model, after a short warm-up."""
    counts = [0] * len(models)
    stop = threading.Event()

    def run(i: int) -> None:
        counts[i] = loop(models[i], data, stop)

    for model in models:  # warm-up outside the measurement
        stop.set()
        loop(model, data, stop)
    stop.clear()
    pool = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def _invoke_loop(store: AssetStore, threads: int) -> Loop:
    """A bare interpreter of its own per thread: set the input once, then only invoke."""

    def loop(model: LoadedModel, data: bytes, stop: threading.Event) -> int:
        path = store.path_of(model.spec.file)
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        tensor = model.input.tensor
        interpreter.set_tensor(tensor.index, np.zeros(tensor.shape, tensor.dtype))
        count = 0
        while True:
            if model.spec.stateful:  # part of every correct invoke of these models
                interpreter.reset_all_variables()
            interpreter.invoke()
            count += 1
            if stop.is_set():
                return count

    return loop


def _pipeline_loop(settings: ExecutorSettings) -> Loop:
    def loop(model: LoadedModel, data: bytes, stop: threading.Event) -> int:
        count = 0
        while True:
            prepared = prepare(
                data,
                model,
                max_pixels=settings.executor_max_image_pixels,
                jpeg_draft=settings.executor_jpeg_draft,
            )
            outputs = model.run(prepared.tensor)
            if model.spec.task == "classification":
                decoding.classify(outputs, model, model.spec.default_top_k)
            else:
                size = (prepared.width, prepared.height)
                decoding.detect(outputs, model, size, model.spec.default_score_threshold)
            count += 1
            if stop.is_set():
                return count

    return loop


def _executor_rate(
    settings: ExecutorSettings, model: str, task: str, data: bytes, jobs: int
) -> tuple[float, dict[str, float]]:
    """Jobs/s of an executor process draining a backlog, and CPU ms per job by process."""
    run_settings, env = fresh_run(settings)
    refs = store_images(run_settings, data)
    port = free_port()
    env["EXECUTOR_HTTP_PORT"] = str(port)
    process = subprocess.Popen([sys.executable, "-m", "executor_service"], env=env)
    try:
        wait_ready(port)
        stack = listening_pids(
            {
                "FerretDB": port_of(settings.mongodb_uri.get_secret_value(), 27017),
                "Kafka": port_of(settings.kafka_bootstrap_servers, 9092),
            }
        )
        processes = {"executor": process.pid, **dict(sorted(stack.items()))}
        before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        job_ids = produce_requests(run_settings, model, task, refs, jobs)
        rate, _finishers = completions(run_settings, set(job_ids))
        cpu_ms = {
            name: (cpu_seconds(pid) - before[name]) * 1000 / jobs for name, pid in processes.items()
        }
        return rate, cpu_ms
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def fresh_run(settings: ExecutorSettings) -> tuple[ExecutorSettings, dict[str, str]]:
    """Topics of its own (created) and a consumer group of its own for one measurement: the
    settings to produce and read with, and the environment for the executor processes."""
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "TOPIC_JOBS": f"bench.{suffix}.jobs",
        "TOPIC_RESULTS": f"bench.{suffix}.results",
        "TOPIC_DEAD_LETTER": f"bench.{suffix}.deadletter",
    }
    run_settings = settings.model_copy(update={key.lower(): value for key, value in topics.items()})
    ensure_topics(run_settings)
    env = {
        **os.environ,
        **topics,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "MONGODB_DATABASE": settings.mongodb_database,
        "EXECUTOR_GROUP_ID": f"bench-{suffix}",
        "LOG_LEVEL": "WARNING",
    }
    return run_settings, env


def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the executor did not become ready")


def store_images(settings: ExecutorSettings, data: bytes) -> list[dict[str, Any]]:
    client = sync_client(settings)
    try:
        images = client[settings.mongodb_database][IMAGE_COLLECTION]
        ids = [ObjectId() for _ in range(DISTINCT_FILES)]
        images.insert_many([image_document(i, data, "image/jpeg", "bench") for i in ids])
    finally:
        client.close()
    digest = hashlib.sha256(data).hexdigest()
    return [
        {
            "uri": image_uri(IMAGE_COLLECTION, str(file_id)),
            "sha256": digest,
            "size": len(data),
            "media_type": "image/jpeg",
            "width": 1,
            "height": 1,
        }
        for file_id in ids
    ]


def produce_requests(
    settings: ExecutorSettings, model: str, task: str, refs: list[dict[str, Any]], jobs: int
) -> list[str]:
    """`jobs` execution requests over `refs`, round robin; their job ids."""
    producer = Producer(producer_config(settings))
    deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job_ids = [uuid.uuid4().hex for _ in range(jobs)]
    for n, job_id in enumerate(job_ids):
        data = {
            "job_id": job_id,
            "execution_id": uuid.uuid4().hex,
            "attempt": 1,
            "model": model,
            "task": task,
            "options": {},
            "image": refs[n % len(refs)],
            "deadline": deadline,
        }
        record = to_record(
            new_event(EventType.EXECUTION_REQUESTED, "/inference-service", job_id, data)
        )
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        producer.produce(settings.topic_jobs, record.value, record.key, headers=headers)
        producer.poll(0)
    producer.flush(60)
    return job_ids


def completions(
    settings: ExecutorSettings, wanted: set[str], timeout: float = 600.0
) -> tuple[float, Counter[str]]:
    """Jobs/s of the `wanted` jobs, from their first started_at to their last completed_at,
    and how many each executor completed."""
    consumer = Consumer(consumer_config(settings, f"bench-reader-{uuid.uuid4().hex}"))
    topic = settings.topic_results
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    first_start: datetime | None = None
    last_end: datetime | None = None
    finisher: dict[str, str] = {}  # job id -> executor; a redelivery counts once
    deadline = time.monotonic() + timeout
    try:
        while len(finisher) < len(wanted) and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                event = decode(message)
                if event.subject not in wanted:
                    continue
                if event.type == EventType.STARTED:
                    started = datetime.fromisoformat(event.data["started_at"])
                    first_start = min(first_start or started, started)
                elif event.type == EventType.COMPLETED:
                    finisher.setdefault(event.subject, event.data["executor"])
                    ended = datetime.fromisoformat(event.data["completed_at"])
                    last_end = max(last_end or ended, ended)
    finally:
        consumer.close()
    if len(finisher) < len(wanted) or first_start is None or last_end is None:
        raise RuntimeError(f"only {len(finisher)} of {len(wanted)} jobs completed")
    return len(wanted) / (last_end - first_start).total_seconds(), Counter(finisher.values())


def _print(f: Figures) -> None:
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in f.cpu_ms.items())
    print(
        f"{f.model}: ceiling {f.ceiling:.0f} invokes/s, in-process {f.in_process:.0f} jobs/s, "
        f"executor {f.executor:.0f} jobs/s ({f.jobs} jobs); CPU ms per job: {cpu}",
        flush=True,
    )


def _table(figures: list[Figures]) -> str:
    lines = [
        "| model | image | ceiling (invoke/s) | in-process (jobs/s) | executor (jobs/s) "
        "| executor / ceiling | executor / in-process | CPU ms per job, by process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [
        f"| {f.model} | {f.image} | {f.ceiling:.0f} | {f.in_process:.0f} | {f.executor:.0f} "
        f"| {f.executor / f.ceiling:.0%} | {f.executor / f.in_process:.0%} "
        f"| {', '.join(f'{name} {ms:.2f}' for name, ms in f.cpu_ms.items())} |"
        for f in figures
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
