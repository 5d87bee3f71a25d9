"""`simulator batch`: classify every image of a directory through the API into SQLite.

Each file is submitted as a job (create and execute in one request) with an `Idempotency-Key`
derived from its content, so a run restarted after a crash finds its earlier jobs instead of
creating new ones. Completion is learned from the event stream (`GET /events`), with a slow
poll of each job as the safety net (the machinery `simulate` uses). Every outcome becomes a
row of the `results` table; files already stored as DONE (same path, content and model) are
skipped on a later run, so a renamed copy of a done file gets a row of its own. Every step is
one line of the log file, and the progress bar (the CLI's) shows the files done.

With `batch_api` the files go to `POST /batches` instead, up to `batch_files` per request,
with a key derived from their names and contents (a rerun finds the same batch); the run
follows each batch's counts (`GET /batches/{id}`) for the bar and stores a row per line of
its results (`GET /batches/{id}/results`).

A bad file (the API's 415 or 422) or a FAILED job is a row with its error, never the end of
the run; only an unreachable API stops it (exit code 2, from the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

from inference_client import (
    ApiError,
    ApiFailure,
    ApiUnreachable,
    Batch,
    ImageUpload,
    InferenceClient,
    Job,
    ServerSentEvent,
    UnexpectedResponse,
    problem_name,
)
from inference_common.events import InvalidEvent, from_record
from inference_common.image_files import IMAGE_MEDIA_TYPES
from simulator.traffic import STRUCTURED

DEFAULT_MODEL: Final = "mobilenet-v2-imagenet-quant"
# Statuses of rows that are not jobs: the API refused the file, or it could not be read.
REJECTED: Final = "REJECTED"
UNREADABLE: Final = "UNREADABLE"
TIMED_OUT: Final = "TIMED_OUT"
# One long poll of `GET /jobs/{id}?wait=`: well inside the client's 30 s request timeout.
LONG_POLL_S: Final = 10.0
# How often a batch's counts are read while it runs.
BATCH_POLL_S: Final = 0.5
# A batch request stays well inside the API's BATCH_MAX_BYTES (256 MiB by default).
BATCH_MAX_BYTES: Final = 64 * 1024 * 1024

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS results (
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    job_id TEXT,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    top_label TEXT,
    score REAL,
    result_json TEXT,
    error TEXT,
    submitted_at TEXT,
    finished_at TEXT,
    PRIMARY KEY (file, sha256, model)
)
"""


class BatchProgress(Protocol):
    """What the run tells a progress display (the CLI's bar; nothing in unit tests)."""

    def planned(self, total: int) -> None: ...

    def started(self) -> None: ...

    def done(self, how: str) -> None: ...


class NoProgress:
    def planned(self, total: int) -> None:
        pass

    def started(self) -> None:
        pass

    def done(self, how: str) -> None:
        pass


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ResultRow:
    file: str
    sha256: str
    model: str
    status: str
    job_id: str | None = None
    top_label: str | None = None
    score: float | None = None
    result_json: str | None = None
    error: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None


class ResultStore:
    """The SQLite `results` table: one row per file, content and model; the last run wins."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def done(self, file: str, sha256: str, model: str) -> str | None:
        """The job id of a DONE row for this file (path and content) and model, if any."""
        row = self._db.execute(
            "SELECT job_id FROM results"
            " WHERE file = ? AND sha256 = ? AND model = ? AND status = 'DONE'",
            (file, sha256, model),
        ).fetchone()
        return str(row[0]) if row else None

    def store(self, row: ResultRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO results (file, sha256, job_id, model, status, top_label,"
            " score, result_json, error, submitted_at, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.file,
                row.sha256,
                row.job_id,
                row.model,
                row.status,
                row.top_label,
                row.score,
                row.result_json,
                row.error,
                row.submitted_at,
                row.finished_at,
            ),
        )
        self._db.commit()

    def rows(self) -> list[dict[str, Any]]:
        cursor = self._db.execute("SELECT * FROM results ORDER BY file")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


class BatchLog:
    """One line per step: `<UTC time> <step> file=<name> job=<id> <detail>`."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(
        self, step: str, file: str | None = None, job_id: str | None = None, detail: str = ""
    ) -> None:
        parts = [utc_now(), f"{step:<9}"]
        if file is not None:
            parts.append(f"file={file}")
        if job_id is not None:
            parts.append(f"job={job_id}")
        if detail:
            parts.append(detail)
        self._stream.write(" ".join(parts) + "\n")
        self._stream.flush()


@dataclass(frozen=True)
class BatchFile:
    """A file of the batch: its name relative to the directory and where it is."""

    name: str
    path: Path

    @property
    def media_type(self) -> str:
        return IMAGE_MEDIA_TYPES[self.path.suffix.lower()]


def find_files(directory: Path, *, recursive: bool = False) -> list[BatchFile]:
    """Every file with an image suffix, sorted by name; hidden files are left out."""
    candidates = directory.rglob("*") if recursive else directory.iterdir()
    return [
        BatchFile(path.relative_to(directory).as_posix(), path)
        for path in sorted(candidates)
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_MEDIA_TYPES
    ]


def idempotency_key(sha256: str, model: str, name: str) -> str:
    """The same file (content, model and name) always gets the same key: a rerun finds its job."""
    scope = hashlib.sha256(f"{model}\n{name}".encode()).hexdigest()[:16]
    return f"batch-{sha256}-{scope}"


def top_of(result: dict[str, Any]) -> tuple[str | None, float | None]:
    """The best class (or detection) of a result body and its score."""
    inner = result.get("result", result)
    if not isinstance(inner, dict):
        return None, None
    best = inner.get("classes") or inner.get("detections") or []
    if not best or not isinstance(best[0], dict):
        return None, None
    return str(best[0].get("label")), float(best[0].get("score", 0.0))


@dataclass
class BatchOptions:
    directory: Path
    model: str = DEFAULT_MODEL
    concurrency: int = 4
    recursive: bool = False
    result_timeout_s: float = 120.0
    # Through POST /batches, this many files a request, instead of a job per file.
    batch_api: bool = False
    batch_files: int = 100


@dataclass
class BatchSummary:
    found: int = 0
    skipped: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        return f"{self.found} files, {self.skipped} skipped as already DONE" + (
            f", {counts}" if counts else ""
        )


@dataclass(eq=False)
class BatchRun:
    client: InferenceClient
    store: ResultStore
    log: BatchLog
    options: BatchOptions
    progress: BatchProgress = field(default_factory=NoProgress)
    summary: BatchSummary = field(default_factory=BatchSummary, init=False)
    _stream_open: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _jobs: dict[str, str] = field(default_factory=dict, init=False)  # job id → file name

    async def run(self) -> BatchSummary:
        """Raises ApiUnreachable when the API cannot be reached at all."""
        files = find_files(self.options.directory, recursive=self.options.recursive)
        self.summary.found = len(files)
        self.progress.planned(len(files))
        self.log(
            "start",
            detail=f"dir={self.options.directory} files={len(files)} model={self.options.model}",
        )
        for batch_file in files:
            self.log("found", batch_file.name)
        if self.options.batch_api:
            await self._run_batches(files)
            self.log("finish", detail=self.summary.line())
            return self.summary
        queue: asyncio.Queue[BatchFile] = asyncio.Queue()
        for batch_file in files:
            queue.put_nowait(batch_file)
        events = asyncio.create_task(self._follow_events())
        try:
            with contextlib.suppress(TimeoutError):
                # The stream only feeds the log: the results come from the long poll.
                async with asyncio.timeout(2.0):
                    await self._stream_open.wait()
            workers = [
                asyncio.create_task(self._worker(queue))
                for _ in range(min(self.options.concurrency, max(len(files), 1)))
            ]
            await asyncio.gather(*workers)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
        self.log("finish", detail=self.summary.line())
        return self.summary

    async def _worker(self, queue: asyncio.Queue[BatchFile]) -> None:
        while not queue.empty():
            await self.process(queue.get_nowait())

    async def process(self, batch_file: BatchFile) -> None:
        name = batch_file.name
        self.progress.started()
        upload = self._read(batch_file)
        if upload is None:
            return
        data, sha256 = upload.data, upload.sha256
        row = ResultRow(name, sha256, self.options.model, REJECTED, submitted_at=utc_now())
        try:
            job = await self.client.create_job(
                ImageUpload(Path(name).name, data, batch_file.media_type),
                name=Path(name).name,
                model=self.options.model,
                idempotency_key=idempotency_key(sha256, self.options.model, name),
            )
        except ApiUnreachable:
            raise
        except (ApiFailure, UnexpectedResponse) as exc:
            row.error = _error_of(exc)
            row.finished_at = utc_now()
            self.log("rejected", name, detail=row.error)
            self._store(row)
            return
        row.job_id, row.status = job.id, job.status
        self._jobs[job.id] = name
        self.log("submitted", name, job.id, f"sha256={sha256[:12]} status={job.status}")
        try:
            job = await self._await_terminal(job)
            await self._settle(row, job)
        except TimeoutError:
            row.status = TIMED_OUT
            row.error = f"no final status after {self.options.result_timeout_s:g} s"
            self.log("error", name, job.id, row.error)
        except ApiUnreachable:
            raise
        except (ApiFailure, UnexpectedResponse) as exc:
            row.error = _error_of(exc)
            self.log("error", name, job.id, row.error)
        row.finished_at = utc_now()
        self._store(row)

    def _store(self, row: ResultRow, *, counted: bool = False) -> None:
        """`counted`: the bar already moved for it (a batch's counts)."""
        self.store.store(row)
        self.summary.statuses[row.status] += 1
        if not counted:
            self.progress.done(row.status)
        outcome = f"{row.top_label} {row.score:.2f}" if row.score is not None else row.error
        self.log("stored", row.file, row.job_id, f"status={row.status} {outcome or ''}".rstrip())

    # --- through POST /batches ---

    async def _run_batches(self, files: list[BatchFile]) -> None:
        todo: list[Upload] = []
        for batch_file in files:
            upload = self._read(batch_file)
            if upload is not None:
                todo.append(upload)
        for chunk in _chunks(todo, self.options.batch_files, BATCH_MAX_BYTES):
            await self._run_batch(chunk)

    def _read(self, batch_file: BatchFile) -> Upload | None:
        """The file to send, or None when it already has its row (unreadable, or DONE)."""
        name = batch_file.name
        try:
            data = batch_file.path.read_bytes()
        except OSError as exc:
            self.log("error", name, detail=f"cannot read: {exc}")
            self._store(ResultRow(name, "", self.options.model, UNREADABLE, error=str(exc)))
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        earlier = self.store.done(name, sha256, self.options.model)
        if earlier is not None:
            self.summary.skipped += 1
            self.log("skipped", name, earlier, f"sha256={sha256[:12]} already DONE")
            self.progress.done("skipped")
            return None
        return Upload(batch_file, data, sha256)

    async def _run_batch(self, chunk: list[Upload]) -> None:
        submitted_at = utc_now()
        for _ in chunk:
            self.progress.started()
        batch = await self.client.create_batch(
            [ImageUpload(u.file.name, u.data, u.file.media_type) for u in chunk],
            model=self.options.model,
            idempotency_key=batch_key(self.options.model, chunk),
        )
        self.log("submitted", detail=f"batch={batch.id} files={batch.total}")
        shown: Counter[str] = Counter()
        batch = await self._follow(batch, shown)
        lines = await self.client.batch_results(batch.id)
        for line in lines:
            upload = chunk[int(line["index"])]
            row = _row_of(line, upload, self.options.model, submitted_at)
            # The bar moved with the counts; a file it did not count yet moves it now.
            counted = shown[row.status] > 0
            if counted:
                shown[row.status] -= 1
            self._store(row, counted=counted)
        self.log("finished", detail=f"batch={batch.id} " + _counts_line(batch))

    async def _follow(self, batch: Batch, shown: Counter[str]) -> Batch:
        """Reads the batch's counts until it is finished, moving the bar by what finished;
        cancels it when nothing finished for `result_timeout_s`."""
        loop = asyncio.get_running_loop()
        last_change, last_done = loop.time(), -1
        while True:
            for status in BATCH_FINAL:
                for _ in range(batch.counts.get(status, 0) - shown[status]):
                    shown[status] += 1
                    self.progress.done(status)
            if batch.finished:
                return batch
            if batch.done != last_done:
                last_change, last_done = loop.time(), batch.done
            elif loop.time() - last_change > self.options.result_timeout_s:
                detail = f"nothing finished for {self.options.result_timeout_s:g} s: cancelled"
                self.log("error", detail=f"batch={batch.id} {detail}")
                return await self.client.cancel_batch(batch.id, detail)
            await asyncio.sleep(BATCH_POLL_S)
            batch = await self.client.get_batch(batch.id)

    async def _await_terminal(self, job: Job) -> Job:
        """The server's long poll answers as soon as the job's record is final. Waiting on the
        event stream instead missed results: the stream runs ahead of the record (the job
        service folds results in separately) and can even beat the create's answer, and a
        waiter that missed its event slept a whole poll interval (issue 11's 5 s stalls)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.result_timeout_s
        while not job.terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            job = await self.client.get_job(job.id, min(remaining, LONG_POLL_S))
        return job

    async def _settle(self, row: ResultRow, job: Job) -> None:
        row.status = job.status
        self.log("status", row.file, job.id, f"status={job.status}")
        if job.status == "DONE":
            result = await self.client.get_result(job.id)
            row.result_json = json.dumps(result, sort_keys=True)
            row.top_label, row.score = top_of(result)
        elif job.error is not None:
            row.error = f"{job.error.code}: {job.error.message}"
        else:
            row.error = f"the job ended {job.status}"

    async def _follow_events(self) -> None:
        backoff = 0.5
        while True:
            try:
                async for event in self.client.events(on_open=self._stream_open.set):
                    backoff = 0.5
                    self._seen(event)
            except ApiFailure as exc:
                self.log("error", detail=f"event stream: {exc}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _seen(self, event: ServerSentEvent) -> None:
        try:
            envelope = from_record(event.data.encode(), STRUCTURED)
        except InvalidEvent:
            return
        name = self._jobs.get(envelope.subject)
        if name is None:
            return  # another client's run, or a job of this batch not yet created
        self.log("event", name, envelope.subject, envelope.type.short)


@dataclass(frozen=True)
class Upload:
    file: BatchFile
    data: bytes
    sha256: str


# A batch's counts of files that are finished, in the API's words.
BATCH_FINAL: Final = ("DONE", "FAILED", "CANCELLED", "REJECTED", "DELETED")


def batch_key(model: str, chunk: list[Upload]) -> str:
    """The same files (names and contents) for the same model: the same batch on a rerun."""
    listing = "\n".join(f"{u.file.name}\0{u.sha256}" for u in chunk)
    return "simulator-batch-" + hashlib.sha256(f"{model}\n{listing}".encode()).hexdigest()


def _chunks(uploads: list[Upload], max_files: int, max_bytes: int) -> Iterator[list[Upload]]:
    chunk: list[Upload] = []
    size = 0
    for upload in uploads:
        if chunk and (len(chunk) >= max_files or size + len(upload.data) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(upload)
        size += len(upload.data)
    if chunk:
        yield chunk


def _row_of(line: dict[str, Any], upload: Upload, model: str, submitted_at: str) -> ResultRow:
    """A results line (`BatchResultLine`) as a row of the `results` table."""
    row = ResultRow(
        upload.file.name,
        upload.sha256,
        model,
        str(line.get("status")),
        job_id=line.get("job_id"),
        submitted_at=submitted_at,
        finished_at=utc_now(),
    )
    result = line.get("result")
    if isinstance(result, dict):
        row.result_json = json.dumps({"job_id": row.job_id, "result": result}, sort_keys=True)
        row.top_label, row.score = top_of(result)
    problem = line.get("problem")
    if isinstance(problem, dict):
        error = problem.get("error")
        if isinstance(error, dict):
            row.error = f"{error.get('code')}: {error.get('message')}"
        else:
            kind = problem_name(str(problem.get("type", "")), str(problem.get("title", "")))
            row.error = f"{kind}: {problem.get('detail')}"
    return row


def _counts_line(batch: Batch) -> str:
    return " ".join(f"{status}={n}" for status, n in batch.counts.items() if n)


def _error_of(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.kind}: {exc.detail}" if exc.detail else exc.kind
    return str(exc)


@contextlib.contextmanager
def opened(db_path: Path, log_path: Path) -> Iterator[tuple[ResultStore, BatchLog]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(db_path)
    try:
        with log_path.open("a", encoding="utf-8") as stream:
            yield store, BatchLog(stream)
    finally:
        store.close()
