"""`simulator batch` against the in-memory API: rows, log lines, skips and failures."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sqlite3
from pathlib import Path

from simulator.batch import (
    BatchLog,
    BatchOptions,
    BatchRun,
    NoProgress,
    ResultStore,
    find_files,
    idempotency_key,
    opened,
    top_of,
)
from simulator.cli import main
from tests.unit.simulator.fake_api import FakeApi, synchronously

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\w+)\s+(.*)$")


def make_directory(root: Path) -> Path:
    images = root / "images"
    (images / "nested").mkdir(parents=True)
    (images / "cat.jpg").write_bytes(b"cat image bytes")
    (images / "dog.png").write_bytes(b"dog image bytes")
    (images / "bad.jpg").write_bytes(b"this is not an image")
    (images / "notes.txt").write_text("not picked up: no image suffix")
    (images / ".hidden.jpg").write_bytes(b"hidden")
    (images / "nested" / "bird.bmp").write_bytes(b"bird image bytes")
    return images


class Progress:
    """Records what the run tells a progress display."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def planned(self, total: int) -> None:
        self.calls.append(f"planned {total}")

    def started(self) -> None:
        self.calls.append("started")

    def done(self, how: str) -> None:
        self.calls.append(how)


async def run_batch(
    api: FakeApi,
    images: Path,
    tmp_path: Path,
    model: str = "cls",
    progress: Progress | None = None,
    **options: object,
) -> tuple[list[dict[str, object]], list[tuple[str, str]]]:
    db, log_path = tmp_path / "out" / "results.sqlite", tmp_path / "out" / "batch.log"
    async with api.client() as client:
        with opened(db, log_path) as (store, log):
            run = BatchRun(
                client,
                store,
                log,
                BatchOptions(images, model=model, **options),  # type: ignore[arg-type]
                progress or NoProgress(),
            )
            await run.run()
            rows = store.rows()
    lines = []
    for line in log_path.read_text().splitlines():
        match = LINE.match(line)
        assert match, line
        lines.append((match.group(1), match.group(2)))
    return rows, lines


def test_files_are_the_images_of_the_directory_sorted(tmp_path: Path) -> None:
    images = make_directory(tmp_path)
    assert [f.name for f in find_files(images)] == ["bad.jpg", "cat.jpg", "dog.png"]
    assert [f.name for f in find_files(images, recursive=True)] == [
        "bad.jpg",
        "cat.jpg",
        "dog.png",
        "nested/bird.bmp",
    ]


def test_the_idempotency_key_depends_on_content_model_and_name() -> None:
    sha = "a" * 64
    key = idempotency_key(sha, "cls", "cat.jpg")
    assert key == idempotency_key(sha, "cls", "cat.jpg")
    assert sha in key and len(key) <= 255
    assert key != idempotency_key(sha, "det", "cat.jpg")
    assert key != idempotency_key("b" * 64, "cls", "cat.jpg")


def test_the_top_class_and_detection_are_read_from_a_result() -> None:
    classes = {"result": {"classes": [{"label": "macaw", "score": 0.9}]}}
    assert top_of(classes) == ("macaw", 0.9)
    assert top_of({"result": {"detections": [{"label": "kite", "score": 0.5}]}}) == ("kite", 0.5)
    assert top_of({"result": {"detections": []}}) == (None, None)


def test_log_lines_name_the_step_file_and_job() -> None:
    stream = io.StringIO()
    log = BatchLog(stream)
    log("submitted", "cat.jpg", "abc", "status=QUEUED")
    log("finish", detail="3 files")
    first, second = stream.getvalue().splitlines()
    assert LINE.match(first)
    assert first.endswith("submitted file=cat.jpg job=abc status=QUEUED")
    assert second.endswith("finish    3 files")


@synchronously
async def test_every_file_becomes_a_row_and_every_step_a_log_line(tmp_path: Path) -> None:
    api = FakeApi()
    rows, lines = await run_batch(api, make_directory(tmp_path), tmp_path)

    by_file = {row["file"]: row for row in rows}
    assert set(by_file) == {"bad.jpg", "cat.jpg", "dog.png"}
    for name in ("cat.jpg", "dog.png"):
        row = by_file[name]
        assert row["status"] == "DONE" and row["model"] == "cls"
        assert row["top_label"] == "Egyptian cat" and row["score"] == 0.82
        assert row["job_id"] in api.jobs and row["error"] is None
        assert json.loads(str(row["result_json"]))["result"]["classes"]
        assert row["submitted_at"] and row["finished_at"]
    bad = by_file["bad.jpg"]
    assert bad["status"] == "REJECTED" and bad["job_id"] is None
    assert "422" in str(bad["error"]) and "cannot identify" in str(bad["error"])

    steps = [step for step, _ in lines]
    assert steps[0] == "start" and steps[-1] == "finish"
    for name in ("cat.jpg", "dog.png"):
        mine = [step for step, rest in lines if f"file={name}" in rest]
        assert "event" in mine, mine
        # The event stream only feeds the log: its lines may come before or after the result.
        own = [step for step in mine if step != "event"]
        assert own == ["found", "submitted", "status", "stored"], mine
    assert [s for s, rest in lines if "file=bad.jpg" in rest] == ["found", "rejected", "stored"]
    assert "2 DONE" in lines[-1][1] and "1 REJECTED" in lines[-1][1]


@synchronously
async def test_a_rerun_skips_what_is_done_and_retries_the_rest(tmp_path: Path) -> None:
    images = make_directory(tmp_path)
    api = FakeApi()
    first, _ = await run_batch(api, images, tmp_path)
    creates = api.count("POST", "/jobs")

    second, lines = await run_batch(api, images, tmp_path)
    # Only the rejected file was sent again.
    assert api.count("POST", "/jobs") == creates + 1
    assert sorted(rest.split()[0] for step, rest in lines if step == "skipped") == [
        "file=cat.jpg",
        "file=dog.png",
    ]
    assert {r["file"]: r["job_id"] for r in second} == {r["file"]: r["job_id"] for r in first}
    assert len(second) == 3


@synchronously
async def test_a_renamed_copy_of_a_done_file_gets_its_own_row(tmp_path: Path) -> None:
    images = make_directory(tmp_path)
    api = FakeApi()
    first, _ = await run_batch(api, images, tmp_path)
    (images / "cat copy.jpg").write_bytes((images / "cat.jpg").read_bytes())

    progress = Progress()
    second, lines = await run_batch(api, images, tmp_path, progress=progress)
    by_file = {r["file"]: r for r in second}
    copy = by_file["cat copy.jpg"]
    assert copy["status"] == "DONE" and copy["sha256"] == by_file["cat.jpg"]["sha256"]
    assert copy["job_id"] not in {r["job_id"] for r in first}  # a job of its own
    assert api.jobs[str(copy["job_id"])]["name"] == "cat copy.jpg"
    assert sorted(rest.split()[0] for step, rest in lines if step == "skipped") == [
        "file=cat.jpg",
        "file=dog.png",
    ]
    # The progress display heard of every file: planned, started, and how each ended.
    assert progress.calls[0] == "planned 4"
    assert progress.calls.count("started") == 4
    assert sorted(c for c in progress.calls[1:] if c != "started") == [
        "DONE",
        "REJECTED",
        "skipped",
        "skipped",
    ]


@synchronously
async def test_a_crashed_run_finds_its_jobs_again_by_idempotency_key(tmp_path: Path) -> None:
    images = make_directory(tmp_path)
    api = FakeApi()
    await run_batch(api, images, tmp_path)
    (tmp_path / "out" / "results.sqlite").unlink()  # as if the rows were never written

    rows, _ = await run_batch(api, images, tmp_path)
    assert len(api.jobs) == 2  # no second job for either image
    assert {r["status"] for r in rows if r["file"] != "bad.jpg"} == {"DONE"}


@synchronously
async def test_failed_jobs_are_rows_with_their_error(tmp_path: Path) -> None:
    api = FakeApi(failing_models={"cls"}, send_events=False)
    rows, lines = await run_batch(api, make_directory(tmp_path), tmp_path)
    failed = [r for r in rows if r["status"] == "FAILED"]
    assert len(failed) == 2
    assert all(r["error"] == "image_unreadable: cannot identify image file" for r in failed)
    assert all(r["top_label"] is None for r in failed)
    assert any(step == "status" and "status=FAILED" in rest for step, rest in lines)


# Issue 11's stalls: a waiter that missed its job's event slept a whole poll interval (5 s)
# before reading a result the job service already had. The bound below is no performance
# figure: it only tells a read on time from one a poll interval late.
MISSED_WAKE_UP_S = 2.5


@synchronously
async def test_a_result_folded_after_its_event_is_read_without_waiting_for_a_poll(
    tmp_path: Path,
) -> None:
    # The event stream announces the result before the job's record has it.
    api = FakeApi(fold_lag_s=0.3)
    async with asyncio.timeout(MISSED_WAKE_UP_S):
        rows, lines = await run_batch(api, make_directory(tmp_path), tmp_path)
    assert sorted(str(r["status"]) for r in rows) == ["DONE", "DONE", "REJECTED"]
    assert sum(step == "event" and "completed" in rest for step, rest in lines) == 2


@synchronously
async def test_a_result_that_beats_the_create_answer_is_not_missed(tmp_path: Path) -> None:
    # The job finishes, and its event passes, before the batch has heard the job's id.
    api = FakeApi(finish_before_answer=True, fold_lag_s=0.1)
    async with asyncio.timeout(MISSED_WAKE_UP_S):
        rows, _ = await run_batch(api, make_directory(tmp_path), tmp_path)
    assert sorted(str(r["status"]) for r in rows) == ["DONE", "DONE", "REJECTED"]


@synchronously
async def test_a_job_that_never_finishes_is_a_timed_out_row(tmp_path: Path) -> None:
    api = FakeApi(stuck_models={"cls"})
    rows, lines = await run_batch(api, make_directory(tmp_path), tmp_path, result_timeout_s=0.3)
    assert sorted(str(r["status"]) for r in rows) == ["REJECTED", "TIMED_OUT", "TIMED_OUT"]
    assert any(step == "error" and "no final status" in rest for step, rest in lines)


def test_rows_are_kept_in_the_results_table(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = ResultStore(path)
    store.close()
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(results)")]
    assert columns == [
        "file",
        "sha256",
        "job_id",
        "model",
        "status",
        "top_label",
        "score",
        "result_json",
        "error",
        "submitted_at",
        "finished_at",
    ]


def test_an_unreachable_api_exits_2(tmp_path: Path) -> None:
    images = make_directory(tmp_path)
    code = main(
        [
            "batch",
            str(images),
            "--db",
            str(tmp_path / "r.sqlite"),
            "--log",
            str(tmp_path / "b.log"),
            "--api",
            "http://127.0.0.1:9/api/v1/inference",
        ]
    )
    assert code == 2
    assert "cannot reach" in (tmp_path / "b.log").read_text()


def test_a_missing_directory_exits_2(tmp_path: Path) -> None:
    code = main(["batch", str(tmp_path / "nowhere"), "--db", "x", "--log", "y"])
    assert code == 2


@synchronously
async def test_through_the_batch_api_each_file_gets_its_row_and_the_bar_moves(
    tmp_path: Path,
) -> None:
    images = make_directory(tmp_path)
    api, progress = FakeApi(), Progress()
    rows, lines = await run_batch(
        api, images, tmp_path, progress=progress, recursive=True, batch_api=True, batch_files=3
    )
    by_file = {row["file"]: row for row in rows}
    assert set(by_file) == {"bad.jpg", "cat.jpg", "dog.png", "nested/bird.bmp"}
    assert by_file["bad.jpg"]["status"] == "REJECTED" and by_file["bad.jpg"]["job_id"] is None
    assert str(by_file["bad.jpg"]["error"]).startswith("unsupported-image-type")
    for name in ("cat.jpg", "dog.png", "nested/bird.bmp"):
        assert by_file[name]["status"] == "DONE" and by_file[name]["job_id"] in api.jobs
        assert by_file[name]["top_label"] is not None
    # Four files, three a request: two batches, and no job created one by one.
    assert api.count("POST", "/batches") == 2 and api.count("POST", "/jobs") == 0
    assert [step for step, _ in lines].count("submitted") == 2
    # The bar: every file started, then finished once, by outcome.
    assert progress.calls.count("started") == 4
    assert sorted(c for c in progress.calls if c in ("DONE", "REJECTED")) == [
        "DONE", "DONE", "DONE", "REJECTED"
    ]  # fmt: skip

    # A rerun sends nothing for what is DONE; the bad file's batch is found by its key.
    again = FakeApi()
    again.batch_by_key, again.batches, again.jobs = api.batch_by_key, api.batches, api.jobs
    await run_batch(again, images, tmp_path, recursive=True, batch_api=True, batch_files=3)
    assert again.count("POST", "/batches") == 1 and len(api.jobs) == 3
