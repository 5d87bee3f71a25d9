"""`simulator batch` against the real platform: the job service and an executor on free ports
with the test's own topics and database (the fixture of test_simulate_platform)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.simulator.test_simulate_platform import (
    ROOT,
    RUN_TIMEOUT_S,
    api_url,  # noqa: F401 (the job service and an executor, as a fixture)
)

pytestmark = pytest.mark.integration

IMAGES = ROOT / ".cache" / "assets" / "images"
EXPECTED = {
    "parrot.jpg": {"macaw"},
    "umbrella.jpg": {"umbrella"},
    "cat.bmp": {"Egyptian cat", "tabby, tabby cat"},
}


def batch(directory: Path, out: Path, api: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "batch",
            str(directory),
            "--db",
            str(out / "results.sqlite"),
            "--log",
            str(out / "batch.log"),
            "--api",
            api,
            "--concurrency",
            "3",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def input_directory(tmp_path: Path) -> Path:
    """The expected images, and a text file named as a JPEG."""
    directory = tmp_path / "input"
    directory.mkdir()
    for name in EXPECTED:
        shutil.copy(IMAGES / name, directory / name)
    (directory / "text.jpg").write_text("just some text, not a JPEG\n")
    return directory


def rows(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return {row["file"]: dict(row) for row in connection.execute("SELECT * FROM results")}


def test_a_directory_is_classified_into_sqlite_and_a_rerun_skips_only_what_is_done(
    api_url: str,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    directory, out = input_directory(tmp_path), tmp_path / "output"
    (directory / "empty.png").write_bytes(b"")

    done = batch(directory, out, api_url)
    assert done.returncode == 0, done.stdout + done.stderr
    found = rows(out / "results.sqlite")
    assert set(found) == {*EXPECTED, "empty.png", "text.jpg"}
    for name, labels in EXPECTED.items():
        row = found[name]
        assert row["status"] == "DONE", row
        assert row["top_label"] in labels, row
        assert 0 < row["score"] <= 1 and row["result_json"] and row["job_id"]
        job = httpx.get(f"{api_url}/jobs/{row['job_id']}").json()
        assert job["status"] == "DONE" and job["name"] == name
    for name in ("empty.png", "text.jpg"):
        row = found[name]
        assert row["status"] == "REJECTED" and row["job_id"] is None, row
        assert row["error"].startswith(("HTTP 415", "HTTP 422")), row

    log = (out / "batch.log").read_text()
    for name in EXPECTED:
        job_id = found[name]["job_id"]
        for step in ("found", "submitted", "event", "status", "stored"):
            assert any(
                line.split()[1] == step and f"file={name}" in line for line in log.splitlines()
            ), (step, name, log)
        assert f"job={job_id}" in log
    assert log.count(" rejected ") == 2

    jobs_before = len(httpx.get(f"{api_url}/jobs", params={"limit": 100}).json()["items"])
    again = batch(directory, out, api_url)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (out / "batch.log").read_text().split(" start ")[-1]
    skipped = [line for line in log.splitlines() if line.split()[1:2] == ["skipped"]]
    assert sorted(line.split()[2] for line in skipped) == sorted(f"file={n}" for n in EXPECTED)
    assert not any(line.split()[1:2] == ["submitted"] for line in log.splitlines())
    assert len(httpx.get(f"{api_url}/jobs", params={"limit": 100}).json()["items"]) == jobs_before
    after = rows(out / "results.sqlite")
    assert set(after) == set(found)
    assert all(after[name] == found[name] for name in EXPECTED)
    assert "3 skipped as already DONE" in again.stdout

    # A renamed copy of a done file is a file of its own: classified, with its own row.
    shutil.copy(IMAGES / "parrot.jpg", directory / "parrot copy.jpg")
    third = batch(directory, out, api_url)
    assert third.returncode == 0, third.stdout + third.stderr
    copy = rows(out / "results.sqlite")["parrot copy.jpg"]
    assert copy["status"] == "DONE" and copy["top_label"] in EXPECTED["parrot.jpg"], copy
    assert copy["sha256"] == found["parrot.jpg"]["sha256"]
    assert copy["job_id"] != found["parrot.jpg"]["job_id"]
    assert "3 skipped as already DONE" in third.stdout


def test_through_the_batch_api_every_file_gets_its_row_and_a_rerun_sends_nothing(
    api_url: str,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    directory, out = input_directory(tmp_path), tmp_path / "output"

    # Two files a request: two batches, the second with one image and the bad file.
    done = batch(directory, out, api_url, "--batch-api", "--batch-files", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    found = rows(out / "results.sqlite")
    assert set(found) == {*EXPECTED, "text.jpg"}
    for name, labels in EXPECTED.items():
        row = found[name]
        assert row["status"] == "DONE" and row["top_label"] in labels, row
        result = httpx.get(f"{api_url}/jobs/{row['job_id']}/result").json()
        assert json.loads(row["result_json"])["result"] == result["result"]
    rejected = found["text.jpg"]
    assert rejected["status"] == "REJECTED" and rejected["job_id"] is None, rejected
    assert rejected["error"].startswith("unsupported-image-type"), rejected
    log = (out / "batch.log").read_text()
    assert log.count(" submitted ") == 2 and log.count(" finished ") == 2, log

    # Nothing new is sent for files already DONE; the bad file's batch is found again.
    jobs_before = len(httpx.get(f"{api_url}/jobs", params={"limit": 100}).json()["items"])
    again = batch(directory, out, api_url, "--batch-api", "--batch-files", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 skipped as already DONE" in again.stdout
    assert len(httpx.get(f"{api_url}/jobs", params={"limit": 100}).json()["items"]) == jobs_before


def test_an_unreachable_api_exits_2(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    done = batch(tmp_path / "in", tmp_path / "out", "http://127.0.0.1:9/api/v1/inference")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot reach" in done.stderr
