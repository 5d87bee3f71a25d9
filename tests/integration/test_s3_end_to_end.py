"""Jobs end to end with IMAGE_STORE=s3, through the real platform: posted to the job service's
HTTP API (which puts the image on the S3-compatible server), run by an executor that reads it by
its `s3://` claim check, the result folded into the job; deleting the job removes the object."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.s3 import S3Server

# The job service and one executor on a free port, exactly as the simulator's test starts them;
# they inherit this process's environment, so the fixture below sets the S3 store before them.
from tests.integration.simulator.test_simulate_platform import api_url

__all__ = ["api_url"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

IMAGES = Path(__file__).resolve().parents[2] / ".cache" / "assets" / "images"
JOB_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def s3_prefix(
    isolated_env: dict[str, str], s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> str:
    """IMAGE_STORE=s3 for the platform this test starts, under a prefix of the test's own."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}/"
    for name, value in {
        "IMAGE_STORE": "s3",
        "IMAGE_STORE_S3_ENDPOINT": s3_server.endpoint,
        "IMAGE_STORE_S3_BUCKET": s3_server.bucket,
        "IMAGE_STORE_S3_PREFIX": prefix,
    }.items():
        monkeypatch.setenv(name, value)
    return prefix


def objects(s3_server: S3Server, prefix: str) -> dict[str, bytes]:
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=s3_server.bucket, Key=item["Key"])["Body"].read()
        for item in listed
    }


def final(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("DONE", "FAILED"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def test_a_job_posted_to_the_api_runs_on_its_image_in_s3_and_takes_it_along_when_deleted(
    api_url: str, s3_server: S3Server, s3_prefix: str
) -> None:
    parrot, cat = (IMAGES / "parrot.jpg").read_bytes(), (IMAGES / "cat.bmp").read_bytes()
    with httpx.Client(base_url=api_url, timeout=30) as api:

        def post(image: bytes, media_type: str, execute: bool) -> str:
            files = {"image": ("upload", image, media_type)}
            form = {"model": "mobilenet-v2-imagenet-quant", "execute": str(execute).lower()}
            # A done job's image goes with its result unless the job keeps it (retention).
            form["keep_image"] = "true"
            response = api.post("/jobs", files=files, data=form)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        done = post(parrot, "image/jpeg", execute=True)
        gone = post(cat, "image/bmp", execute=False)
        # Both images are objects under the prefix, named by their content's sha256.
        stored = objects(s3_server, s3_prefix)
        assert sorted(stored.values()) == sorted([parrot, cat])
        for key, data in stored.items():
            assert hashlib.sha256(data).hexdigest() in key

        job = final(api, done)
        assert job["status"] == "DONE", job
        result = api.get(f"/jobs/{done}/result").json()
        assert result["result"]["classes"][0]["label"] == "macaw"
        assert api.get(f"/jobs/{done}/image").content == parrot  # read back from S3

        # The second image vanishes from the bucket before its job runs: a final failure.
        (cat_key,) = [key for key, data in stored.items() if data == cat]
        s3_server.client().delete_object(Bucket=s3_server.bucket, Key=cat_key)
        assert api.post(f"/jobs/{gone}/execution").status_code == 202
        job = final(api, gone)
        assert job["status"] == "FAILED" and job["error"]["code"] == "image_missing", job

        # Deleting a job deletes its object.
        assert api.delete(f"/jobs/{done}").status_code == 204
        assert objects(s3_server, s3_prefix) == {}
